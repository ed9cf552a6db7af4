"""Exception hierarchy. Every error egorag raises on purpose derives from :class:`EgoragError`."""

from __future__ import annotations


class EgoragError(Exception):
    """Root of all egorag errors."""


class ConfigError(EgoragError, ValueError):
    """A configuration value or file is invalid (unknown key, wrong type, bad value)."""


class ModelLoadError(EgoragError):
    """A model's weights could not be found or loaded. The message says what was tried."""


class ModalityUnavailableError(ModelLoadError):
    """A modality was asked for explicitly but its model cannot be loaded here."""


class DeviceError(EgoragError):
    """An explicit device was requested that this machine does not have."""


class IndexMismatchError(EgoragError):
    """A store was opened with encoders that differ from the ones that built it."""


class StoreDamagedError(EgoragError):
    """LanceDB could not read or write the store's tables; the message names the store and says
    how to recover (``egorag check``)."""


class QueryError(EgoragError, ValueError):
    """A search is malformed: no text and no image, or ``k`` below 1."""


class NotFoundError(EgoragError, LookupError):
    """No video or scene with the given id in the store."""


class LLMError(EgoragError):
    """The LLM endpoint could not be reached, refused the request or answered something else."""


class MediaError(EgoragError):
    """A media file is missing, unreadable, truncated, empty or has no usable stream.

    The message always starts with the file's path.
    """

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MissingExtraError(EgoragError, ImportError):
    """An optional dependency is missing; the message names the pip extra to install."""

    def __init__(self, package: str, extra: str):
        self.package = package
        self.extra = extra
        super().__init__(
            f"{package} is not installed; install it with: pip install \"egorag[{extra}]\""
        )
