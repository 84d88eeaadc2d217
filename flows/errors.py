"""Errors a user can act on: each message is one sentence saying what is wrong and what to do."""


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
