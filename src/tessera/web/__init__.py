"""The web console: ``tessera web`` serves it over a running network (``docs/web.md``)."""

from tessera.web.app import create_app
from tessera.web.console import Console

__all__ = ["Console", "create_app"]
