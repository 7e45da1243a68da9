"""Errors meant for users: the CLI prints their message on one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user (unknown name, malformed file, impossible option)."""
