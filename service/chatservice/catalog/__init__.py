"""The model list: the public names of the routing table."""
