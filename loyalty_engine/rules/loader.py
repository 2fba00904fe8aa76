"""Rule files (YAML) -> checked Metric and Rule objects. Every error names file:line:column.

The shape of a rule file (documented for ops in docs/rules.md):

    metrics:
      orders_recent:   {count: orders, window: 90d}
      orders_baseline: {count: orders, window: 365d, ending: 90d ago}
    rules:
      - id: falling_order_frequency
        severity: high
        when: orders_baseline >= 6 and orders_recent < 0.5 * expected
        values: {expected: orders_baseline * 90 / 365}
        title:   {de: ..., en: ...}
        message: {de: ..., en: ...}
        action:  {de: ..., en: ...}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from loyalty_engine.contract import TABLES
from loyalty_engine.errors import RuleError

SEVERITIES = ("info", "low", "medium", "high", "critical")
LANGUAGES = ("de", "en")
AGGREGATES = ("count", "latest", "previous", "days_since_latest")
_SPAN = re.compile(r"^\s*(\d+)\s*([dwmy])\s*$")
_ENDING = re.compile(r"^\s*(\d+)\s*([dwmy])\s+ago\s*$")
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_PER_YEAR = {"d": 366, "w": 53, "m": 12, "y": 1}
TEXT_ENV = SandboxedEnvironment(autoescape=False)


@dataclass(frozen=True)
class Where:
    """A place in a rule file, for error messages."""

    file: Path
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Span:
    """A length of time written like 90d, 12w, 6m or 1y."""

    amount: int
    unit: str  # d | w | m | y

    @classmethod
    def parse(cls, text: str, pattern: re.Pattern = _SPAN) -> "Span | None":
        """The span, or None when the text is not one or spans more than a century."""
        match = pattern.match(str(text))
        if not match:
            return None
        span = cls(int(match.group(1)), match.group(2))
        return span if span.amount <= 100 * _PER_YEAR[span.unit] else None

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


@dataclass(frozen=True)
class Metric:
    """A per-account number over one extract table, as of the night."""

    name: str
    aggregate: str  # count | latest | previous | days_since_latest
    table: str
    column: str | None  # for latest/previous: the column whose value is taken
    window: Span | None  # None: all history up to the window's end
    ending: Span  # how long before the night the window ends (0d: the night itself)
    where: Where


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    when: str
    values: dict[str, str]
    title: dict[str, str]
    message: dict[str, str]
    action: dict[str, str]
    enabled: bool
    where: Where
    # Where each expression sits in the file, so compile errors can point into it.
    places: dict[str, Where] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class RuleSet:
    metrics: dict[str, Metric]
    rules: list[Rule]


class _LineLoader(yaml.SafeLoader):
    """A YAML loader whose mappings remember where each key's value starts."""


class _Located(dict):
    marks: dict


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Located:
    mapping = _Located(loader.construct_mapping(node, deep=True))
    mapping.marks = {key.value: (value.start_mark, getattr(value, "style", None)) for key, value in node.value}
    mapping.marks[None] = (node.start_mark, None)
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_rules(folder: Path) -> RuleSet:
    """Read and check every *.yaml rule file in the folder (test files, *.test.yaml, are not rules)."""
    if not folder.is_dir():
        raise RuleError(f"{folder}: rules folder does not exist")
    metrics: dict[str, Metric] = {}
    rules: list[Rule] = []
    seen: dict[str, Where] = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name.endswith(".test.yaml"):
            continue
        file_metrics, file_rules = _load_file(path)
        for name, metric in file_metrics.items():
            if name in metrics and _same_place(metrics[name], metric) != metric:
                raise RuleError(f"{metric.where}: metric '{name}' is already defined differently at {metrics[name].where}")
            metrics.setdefault(name, metric)
        for rule in file_rules:
            if rule.id in seen:
                raise RuleError(f"{rule.where}: rule id '{rule.id}' is already used at {seen[rule.id]}")
            seen[rule.id] = rule.where
            rules.append(rule)
    return RuleSet(metrics, rules)


def _same_place(existing: Metric, other: Metric) -> Metric:
    """`existing` as if written at `other`'s place, so equal definitions in two files compare equal."""
    return Metric(**{**existing.__dict__, "where": other.where})


def _load_file(path: Path) -> tuple[dict[str, Metric], list[Rule]]:
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise RuleError(f"{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RuleError(f"{path}: cannot read rule file ({err})") from None
    if doc is None:
        return {}, []
    if not isinstance(doc, _Located):
        raise RuleError(f"{path}:1:1: expected a mapping with 'metrics' and 'rules'")
    _only_keys(path, doc, {"metrics", "rules"})
    metrics = {}
    raw_metrics = doc.get("metrics") or {}
    if raw_metrics and not isinstance(raw_metrics, _Located):
        raise RuleError(f"{_at(path, doc, 'metrics')}: 'metrics' must be a mapping of name: definition")
    for name, spec in raw_metrics.items():
        metrics[name] = _metric(path, raw_metrics, name, spec)
    raw_rules = doc.get("rules") or []
    if not isinstance(raw_rules, list):
        raise RuleError(f"{_at(path, doc, 'rules')}: 'rules' must be a list of rules")
    rules = []
    for spec in raw_rules:
        if not isinstance(spec, _Located):
            raise RuleError(f"{_at(path, doc, 'rules')}: each rule must be a mapping with id, severity, when, …")
        rules.append(_rule(path, spec))
    return metrics, rules


def _metric(path: Path, parent: _Located, name: str, spec) -> Metric:
    here = _at(path, parent, name)
    if not _ID.match(str(name)):
        raise RuleError(f"{here}: metric name '{name}' must be lower_case letters, digits and _")
    if not isinstance(spec, _Located):
        raise RuleError(f"{here}: metric '{name}' must be a mapping such as {{count: orders, window: 90d}}")
    aggregates = [a for a in AGGREGATES if a in spec]
    if len(aggregates) != 1:
        raise RuleError(f"{here}: metric '{name}' needs exactly one of {', '.join(AGGREGATES)}")
    aggregate = aggregates[0]
    _only_keys(path, spec, {aggregate, "window", "ending"})
    target = str(spec[aggregate])
    table, _, column = target.partition(".")
    if table not in TABLES or TABLES[table].event_date is None:
        known = ", ".join(t for t in TABLES if TABLES[t].event_date)
        raise RuleError(f"{_at(path, spec, aggregate)}: unknown table '{table}' (known: {known})")
    if aggregate in ("latest", "previous"):
        columns = [c.name for c in TABLES[table].columns if c.kind == "number"] + (
            ["term_months"] if table == "contracts" else []
        )
        if column not in columns:
            raise RuleError(
                f"{_at(path, spec, aggregate)}: {aggregate} needs table.column with a number column, "
                f"e.g. {table}.{columns[0] if columns else '…'} (known: {', '.join(columns) or 'none'})"
            )
    elif column:
        raise RuleError(f"{_at(path, spec, aggregate)}: {aggregate} takes a table name, not '{target}'")
    window = None
    if "window" in spec:
        window = Span.parse(spec["window"])
        if window is None or window.amount == 0:
            raise RuleError(
                f"{_at(path, spec, 'window')}: window must look like 90d, 12w, 6m or 1y (at most 100 years), got {spec['window']!r}"
            )
    elif aggregate == "count":
        raise RuleError(f"{here}: count metric '{name}' needs a window, e.g. window: 90d")
    ending = Span(0, "d")
    if "ending" in spec:
        ending = Span.parse(spec["ending"], _ENDING)
        if ending is None:
            raise RuleError(f"{_at(path, spec, 'ending')}: ending must look like '90d ago' (at most 100 years), got {spec['ending']!r}")
    return Metric(name, aggregate, table, column or None, window, ending, _where(path, parent, name))


def _rule(path: Path, spec: _Located) -> Rule:
    _only_keys(path, spec, {"id", "severity", "when", "values", "title", "message", "action", "enabled"})
    for key in ("id", "severity", "when", "title", "message", "action"):
        if key not in spec:
            raise RuleError(f"{_at(path, spec, None)}: rule is missing required key '{key}'")
    rule_id = str(spec["id"])
    if not _ID.match(rule_id):
        raise RuleError(f"{_at(path, spec, 'id')}: rule id '{rule_id}' must be lower_case letters, digits and _")
    if spec["severity"] not in SEVERITIES:
        raise RuleError(f"{_at(path, spec, 'severity')}: severity must be one of {', '.join(SEVERITIES)}, got {spec['severity']!r}")
    if not isinstance(spec.get("enabled", True), bool):
        raise RuleError(f"{_at(path, spec, 'enabled')}: enabled must be true or false")
    values = spec.get("values") or {}
    if values and not isinstance(values, _Located):
        raise RuleError(f"{_at(path, spec, 'values')}: values must be a mapping of name: expression")
    places = {"when": _expression_place(path, spec, "when")}
    places.update({f"values.{name}": _expression_place(path, values, name) for name in values})
    texts = {key: _texts(path, spec, key) for key in ("title", "message", "action")}
    return Rule(
        id=rule_id,
        severity=spec["severity"],
        when=str(spec["when"]),
        values={str(k): str(v) for k, v in values.items()},
        enabled=spec.get("enabled", True),
        where=_where(path, spec, None),
        places=places,
        **texts,
    )


def _texts(path: Path, spec: _Located, key: str) -> dict[str, str]:
    texts = spec[key]
    if isinstance(texts, str):
        texts = {language: texts for language in LANGUAGES}
    elif not isinstance(texts, _Located) or not texts:
        raise RuleError(f"{_at(path, spec, key)}: {key} must be text or a mapping of language: text (de, en)")
    else:
        _only_keys(path, texts, set(LANGUAGES))
    for language, text in texts.items():
        place = _at(path, texts, language) if isinstance(texts, _Located) else _at(path, spec, key)
        try:
            TEXT_ENV.parse(str(text))
        except Exception as err:  # jinja2.TemplateSyntaxError: a placeholder written wrong
            raise RuleError(f"{place}: {key} is not a valid template ({err})") from None
    return {language: str(text) for language, text in texts.items()}


def placeholders(text: str) -> set[str]:
    """The {{ names }} a title, message or action uses."""
    return meta.find_undeclared_variables(TEXT_ENV.parse(text))


def _only_keys(path: Path, spec: _Located, allowed: set) -> None:
    for key in spec:
        if key not in allowed:
            raise RuleError(f"{_at(path, spec, key)}: unknown key '{key}' (allowed: {', '.join(sorted(map(str, allowed)))})")


def _where(path: Path, spec: _Located, key) -> Where:
    mark = spec.marks.get(key, spec.marks[None])[0]
    return Where(path, mark.line + 1, mark.column + 1)


def _at(path: Path, spec, key) -> Where | Path:
    return _where(path, spec, key) if isinstance(spec, _Located) else path


def _expression_place(path: Path, spec: _Located, key: str) -> Where:
    """Where the expression's first character is, so a column inside it can be added on."""
    mark, style = spec.marks.get(key, spec.marks[None])
    quoted = 1 if style in ('"', "'") else 0
    return Where(path, mark.line + 1, mark.column + 1 + quoted)
