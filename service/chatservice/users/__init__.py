"""People: accounts with an email, an argon2id password hash and a role."""
