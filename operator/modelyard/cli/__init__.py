"""The ``modelyard`` command line."""
