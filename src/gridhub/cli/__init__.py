"""The ``gridhub`` command line (typer)."""
