"""The HTTP API: ``create_app(hub)`` builds the FastAPI application."""

from gridhub.api.app import create_app

__all__ = ["create_app"]
