"""Errors that reach a user as one line, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: the CLI prints the message on one line and exits 2."""

    exit_code = 2


class Infeasible(Exception):
    """A valid request that cannot be satisfied (e.g. a model that does not fit the GPUs): exit 1."""

    exit_code = 1
