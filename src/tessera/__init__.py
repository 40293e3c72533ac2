"""Tessera: privacy-preserving statistics and learning over data that never leaves its owners."""

__version__ = "0.1.0"
