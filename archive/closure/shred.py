"""Moved to archive/vault/shred.py (crypto-erase lives in the vault, issue 21).

Kept only for plugins/closure_routes.py, which another change is rewriting; once it
imports archive.vault.shred this module goes."""

from archive.vault.shred import shred_header

__all__ = ["shred_header"]
