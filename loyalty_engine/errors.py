"""Errors a user can fix: bad config, bad rule, bad extract. The CLI prints them on one line."""

from loyalty_engine.safe_text import escaped


class UserError(Exception):
    """A mistake in something the user wrote or delivered; printed without a traceback."""

    exit_code = 2

    def __str__(self) -> str:
        # Messages quote what the user wrote (a YAML key, a value); a line break or a terminal
        # escape in it must not break the one line the CLI prints, so each is shown escaped.
        return escaped(super().__str__())


class ConfigError(UserError):
    """config.yaml is missing, unreadable or does not match the settings schema."""


class ExtractError(UserError):
    """A night's extract cannot be loaded at all (missing file or column, unreadable file): a gate failure."""

    exit_code = 3


class RuleError(UserError):
    """A rule file cannot be read or compiled."""

    exit_code = 4


class RunLocked(UserError):
    """Another run holds the database: this one stops before touching anything."""

    exit_code = 7


class DeliveryError(Exception):
    """Some digests could not be delivered; they stay in the ledger and are retried on the next run."""

    exit_code = 5


def not_valid_yaml(path, err) -> str:
    """`path:line:column: not valid YAML (problem)`, from a yaml.YAMLError."""
    mark = getattr(err, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    return f"{where}: not valid YAML ({getattr(err, 'problem', err)})"
