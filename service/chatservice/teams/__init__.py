"""Teams of users, and the memberships that join them."""
