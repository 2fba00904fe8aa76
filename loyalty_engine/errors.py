"""Errors a user can fix: bad config, bad rule, bad extract. The CLI prints them on one line."""


class UserError(Exception):
    """A mistake in something the user wrote or delivered; printed without a traceback."""

    exit_code = 2


class ConfigError(UserError):
    """config.yaml is missing, unreadable or does not match the settings schema."""


class ExtractError(UserError):
    """A night's extract cannot be loaded at all (missing file, missing column, broken CSV)."""

    exit_code = 3


class RuleError(UserError):
    """A rule file cannot be read or compiled."""

    exit_code = 4


class DeliveryError(Exception):
    """Some digests could not be delivered; they stay in the ledger and are retried on the next run."""

    exit_code = 5
