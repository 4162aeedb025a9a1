"""The analysis dashboard (R1–R6): HTML pages and static assets, reading the JSON API."""
