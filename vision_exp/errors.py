"""Errors the entry points turn into one clear message and a non-zero exit.

Anything raised as a `UserError` is the user's to fix (a path, a value, a file); the entry
points print its message without a traceback. `Interrupted` is a stop the user asked for. Every
other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: a missing path, an invalid value, an unreadable file."""

    # Set when the run stopped before it wrote anything: an earlier run's status in the folder stands.
    before_start = False


class ConfigError(UserError):
    """A configuration value that cannot work."""


class RunFolderBusy(ConfigError):
    """Another process trains in the run folder: its files are that run's, not this one's to mark."""


class DataError(UserError):
    """A dataset that is missing, empty or inconsistent."""


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded into this run."""


class OutOfMemory(UserError):
    """The device ran out of memory: a setting fixes it (batches in parts, smaller evaluation batches), so one
    line says which."""


class RankZeroFailed(UserError):
    """Under torchrun, rank 0 stopped in a block the other ranks waited for (`distributed.main_first`). Rank 0
    prints and records why; the others stop with its message, without printing it again or writing over its record."""


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived: a checkpoint was written and the run stopped; resume continues it. One that
    arrived after the last step is `completed`: the run finished first, and the stop is for the process (a sweep)."""

    def __init__(self, message: str, signum: int, completed: bool = False) -> None:
        super().__init__(message)
        self.signum = signum
        self.completed = completed
