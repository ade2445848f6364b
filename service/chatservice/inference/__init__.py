"""Inference backends behind one interface, and the routing table that picks one per model."""
