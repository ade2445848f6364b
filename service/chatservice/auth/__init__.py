"""Logins: the OAuth2 password flow, and the short-lived JWTs it issues."""
