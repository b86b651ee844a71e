"""Errors a user can act on. Every one derives from UserError; the entry scripts run
their main through `srx4.core.cli.run_main`, which prints a UserError as one line,
`error: <what, naming the file or flag, and the remedy>`, and exits with its
`exit_code`: 2 when the input or the settings cannot be used, 1 when the job ran but
its result is refused or incomplete (JobFailed; the Kaggle CLI, a CSV or an ONNX
export that does not check out). Anything else is a bug and keeps its traceback (it
is never turned into a quiet one-liner)."""


class UserError(Exception):
    """A problem with the input or the settings, said in one line with its remedy."""
    exit_code = 2


class JobFailed(UserError):
    """The job ran, but what it made is refused or incomplete (inputs not predicted, a check
    that failed): said in one line, exit code 1."""
    exit_code = 1


class FlagError(UserError, ValueError):
    """A flag's value that cannot be used (--ema 1.5, --grad-accum 0, ...)."""


class DataError(UserError, ValueError):
    """Training or test data that cannot be used (no pairs, too few, files gone)."""


class MissingData(DataError, FileNotFoundError):
    """A data folder or file that is not there."""


class RunStopped(UserError, RuntimeError):
    """A training run that cannot go on (non-finite weights, data that does not fit, ...)."""
