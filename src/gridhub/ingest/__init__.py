"""Ingest: sources, pipeline, journal, dead-letter."""
