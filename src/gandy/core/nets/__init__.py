"""Batched networks: every member of a batch has its own parameters (``base``: what they share)."""
