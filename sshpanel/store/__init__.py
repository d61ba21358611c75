"""Provides the database layer: Peewee models and the `Store` repository.

This package is the only code that imports peewee
(docs/ARCHITECTURE.md "Layers").
"""

from sshpanel.store.store import Store, open_store

__all__ = ["Store", "open_store"]
