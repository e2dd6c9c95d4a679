"""The one error vocabulary of fleetscale, split by what the caller should do.

    AutoscalerError
    ├── TransientError(retry_after_s)   retry later: a 429, a 5xx, a timeout
    └── PermanentError                  retrying will not help
        ├── ConfigError                 the user's configuration or a data file is wrong
        ├── NotFound                    the object named does not exist (any more)
        └── DataQualityError            input data cannot be used (malformed trace line, NaN series)

Adapters translate their dependency's exceptions into these at the boundary; the core raises only these.
"""

from __future__ import annotations


class AutoscalerError(Exception):
    """Base of every error fleetscale raises on purpose."""


class TransientError(AutoscalerError):
    """A failure that may go away by itself; the loop retries it after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentError(AutoscalerError):
    """A failure that retrying the same call will not fix."""


class ConfigError(PermanentError):
    """The configuration or a bundled data file is invalid; the message names the field and the value."""


class NotFound(PermanentError):  # noqa: N818 - the name says what happened, like httpx's NotFound
    """The object named does not exist."""


class DataQualityError(PermanentError):
    """Input data cannot be used as it is; the message says where (file and line, series and index)."""
