"""Storage: the one connection factory, the migrations and every SQL statement."""

from plurcast.store.connection import connect

__all__ = ["connect"]
