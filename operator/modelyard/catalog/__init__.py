"""Catalogs of what providers and engines accept, known offline (pure data)."""
