"""The built-in web server."""
from .app import create_app

__all__ = ["create_app"]
