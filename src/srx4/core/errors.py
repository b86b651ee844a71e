"""Errors a user can act on: the entry scripts print them as one line naming the file or
flag and what to do (`error: ...`, exit code 2); anything else is a bug and keeps its
traceback."""


class UserError(Exception):
    """A problem with the input or the settings, said in one line with its remedy."""


class RunStopped(UserError, RuntimeError):
    """A training run that cannot go on (non-finite weights, data that does not fit, ...)."""
