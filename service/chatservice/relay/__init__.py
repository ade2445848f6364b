"""`POST /embeddings` and `POST /completions` (legacy): relayed to a model's upstream."""
