"""The one exception type the run scripts turn into a one-line message and exit code."""


class UserError(Exception):
    """A problem with the user's input (files, flags, checkpoints): printed as one line,
    without a traceback, and the program exits with status 2."""
