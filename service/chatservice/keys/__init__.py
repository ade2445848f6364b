"""API keys: issuing, hashing and authenticating bearer keys."""
