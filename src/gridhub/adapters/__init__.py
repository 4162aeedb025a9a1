"""Adapters: bytes in, domain objects out."""
