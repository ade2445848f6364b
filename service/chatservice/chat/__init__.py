"""Chat completions: the OpenAI wire contract, JSON and server-sent events."""
