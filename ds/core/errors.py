"""The one exception type for mistakes a user can fix.

run.py prints a UserError as a single line and exits non-zero; anything else
is a bug in this code and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's files, settings or AWS account, said plainly."""


class Stopped(KeyboardInterrupt):
    """Ctrl-C that left something to say: run.py prints the message instead of the
    usual "run the same command again" (which would, say, queue jobs twice)."""
