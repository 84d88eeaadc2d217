"""Errors a user can act on: each message is one sentence saying what is wrong and what to do."""

import errno


class PipelineError(Exception):
    """Base for every error the CLI turns into a one-line message and a non-zero exit."""


class ConfigError(PipelineError):
    """A setting or parameter is invalid."""


class SourceError(PipelineError):
    """The source could not be reached or answered in a way the loader cannot use."""


class ContractError(SourceError):
    """The source's columns no longer match the dataset spec."""


class IncompleteMonthError(SourceError):
    """A month's rows did not reconcile with the source's count."""


class RunStopped(PipelineError):
    """The run is stopping (interrupted, or a fatal error elsewhere): nothing more is written."""


class LakeWriteError(PipelineError):
    """The lake's storage refused a write (disk full, read-only): no month can be written."""


class WarehouseBusyError(PipelineError):
    """Another process holds the warehouse file."""


def lake_write_error(exc: OSError, where: str) -> LakeWriteError:
    """The one sentence for a write the lake's file system refused."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return LakeWriteError(
            f"The lake at {where} is out of disk space ({reason}): free some space or set "
            "CRIME_LAKE_URL to a disk with room, then run again; the months already written "
            "are whole."
        )
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return LakeWriteError(
            f"The lake at {where} cannot be written ({reason}): make it writable or set "
            "CRIME_LAKE_URL to a folder this user may write, then run again."
        )
    return LakeWriteError(
        f"Writing the lake at {where} failed ({reason}): check the disk, then run again; the "
        "months already written are whole."
    )
