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


def not_valid_yaml(path, err) -> str:
    """`path:line:column: not valid YAML (problem)`, from a yaml.YAMLError."""
    mark = getattr(err, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    return f"{where}: not valid YAML ({getattr(err, 'problem', err)})"
