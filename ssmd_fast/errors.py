"""One base class, a few precise subclasses. Every error the user can act on carries its context."""

import errno
import os


def makedirs_cause(exc: OSError) -> OSError:
    """The cause to report for ``os.makedirs(path, exist_ok=True)`` failing: its FileExistsError means
    ``path`` is there and is not a directory (reported as "File exists (EEXIST)", as if that were wrong)."""
    if isinstance(exc, FileExistsError):
        return NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    return exc


class SsmdError(Exception):
    """Base of every error ssmd-fast raises on purpose."""


class ConfigError(SsmdError):
    """A configuration file or environment variable is wrong.

    The message names the file, the line and the key path, e.g.
    ``kalshi-dev.yaml:7: transport.urll: unknown key``.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None):
        self.file, self.line, self.key, self.reason = file, line, key, message
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        if key:
            where += f"{key}: "
        super().__init__(where + message)


class AuthError(SsmdError):
    """Credentials cannot be used (bad key file, encrypted or non-RSA key, rejected handshake)."""


class InvalidFrame(SsmdError):
    """A frame broke the normalized-schema rules; ``reason`` is the short reason code."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class StorageError(SsmdError):
    """A file sink or spill file could not be written (disk full, permissions)."""


class PublishError(SsmdError):
    """The publisher cannot go on (stream missing in verify mode, rejected by the server)."""
