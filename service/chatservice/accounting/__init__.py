"""Accounting: the usage ledger, prices and spend, and rate limits."""
