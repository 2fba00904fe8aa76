"""Rule files (YAML) -> checked Metric and Rule objects. Every error names file:line:column.

The shape of a rule file (documented for ops in docs/rules.md):

    metrics:
      orders_recent:   {count: orders, window: 90d}
      orders_baseline: {count: orders, window: 365d, ending: 90d ago}
      escalations:     {count: interactions, window: 30d, where: "kind = 'escalation'"}
    rules:
      - id: falling_order_frequency
        severity: high
        params: {min_baseline: 6, share: 0.5}           # named thresholds the texts below use
        when: orders_baseline >= min_baseline and orders_recent < share * expected
        for: 2 nights
        resolve_when: orders_recent >= 0.8 * expected   # hysteresis (and/or keep_firing_for: 3 nights)
        values: {expected: orders_baseline * 90 / 365}
        labels: {team: field-sales}
        title:   {de: ..., en: ...}
        message: {de: ..., en: ...}
        action:  {de: ..., en: ...}

What each metric kind takes, and whether it needs a window, comes from its entry in kinds.py.
`check_rule_files` collects every problem of every file (for `loyalty rules check`);
`load_rules` stops at the first (for the nightly run, which refuses broken rules). The helpers
for YAML that remembers places (`read_located`, `Located`, `at`, `place`, `only_keys`,
`did_you_mean`) serve rule tests and snoozes.yaml too.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from jinja2 import meta, nodes

from loyalty_engine.contract import TABLES
from loyalty_engine.errors import RuleError
from loyalty_engine.rules.kinds import BUILTINS, KINDS, Kind, Takes
from loyalty_engine.yaml_files import SafeLoader, load_yaml

SEVERITIES = ("info", "low", "medium", "high", "critical")
# live: mailed as usual; shadow: evaluated and kept in history, never mailed (a rule on trial).
MODES = ("live", "shadow")
from loyalty_engine.i18n import LANGUAGES  # noqa: E402  (the digest languages: one i18n module each)
# What a metric computes over the rows of its table inside its window, and what it needs:
# a table ("orders"), a number column ("orders.amount") or any column ("interactions.contact_person").
# Its kind's entry in kinds.py says so; besides its kind, a metric over rows may have these keys.
_METRIC_KEYS = ("window", "ending", "where")
_FOR = re.compile(r"^\s*(\d+)\s*(nights?)?\s*$")
LARGEST_PARAM = 1e15  # as the compiler's largest literal: beyond it DuckDB's decimals overflow
_SPAN = re.compile(r"^\s*(\d+)\s*([dwmy])\s*$")
_ENDING = re.compile(r"^\s*(\d+)\s*([dwmy])\s+ago\s*$")
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_PER_YEAR = {"d": 366, "w": 53, "m": 12, "y": 1}
from loyalty_engine.rules.texts import RULE_FILTERS, TEXT_ENV  # noqa: E402  (rule texts: names and a few filters)


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
    """A per-account value over one extract table (or an account attribute), as of the night."""

    name: str
    kind: str  # a key of kinds.KINDS: count, sum, latest, …
    table: str
    column: str | None  # the column summed, averaged, taken …; None for count, rhythm, days_since_latest
    window: Span | None  # None: all history up to the window's end
    ending: Span  # how long before the night the window ends (0d: the night itself)
    where: Where
    filter: str | None = None  # a condition on the table's columns: only matching rows count
    filter_place: Where | None = field(default=None, compare=False)
    options: tuple[tuple[str, object], ...] = ()  # the kind's own keys (kinds.Option), as (key, value)

    @property
    def column_type(self) -> str | None:
        """The contract's type of the column read (text, number, date, flag); None for a table."""
        return TABLES[self.table].column(self.column).kind if self.column else None

    @property
    def value_type(self) -> str:
        """kinds.NUMBER or kinds.TEXT: what the metric's value is, for checking conditions."""
        return KINDS[self.kind].value_type(self.column_type)

    def option(self, key: str):
        """The value of one of the kind's own keys, as its parser read it."""
        return dict(self.options)[key]

    def describe(self) -> str:
        """In words, for `loyalty explain`: 'number of orders, over 365d ending 90d ago'."""
        kind = KINDS[self.kind]
        words = kind.date_words if kind.date_words and self.column_type == "date" else kind.words
        what = words.format(table=self.table, column=self.column, **dict(self.options))
        if not kind.reads_rows:
            return what
        if self.filter:
            what += f" where {self.filter}"
        if self.window:
            what += f", over {self.window}"
        if self.ending.amount:
            what += f" ending {self.ending} ago"
        return what


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
    for_nights: int = 1  # the condition must hold this many evaluated nights in a row
    labels: dict[str, str] = field(default_factory=dict)
    # Weaker rules this one hides on the same account while it fires (Alertmanager's inhibition).
    inhibits: tuple[str, ...] = ()
    # Where each expression sits in the file, so compile errors can point into it.
    places: dict[str, Where] = field(default_factory=dict, compare=False)
    mode: str = "live"  # one of MODES; a shadow rule's warnings are kept in history but never mailed
    # Named thresholds `when`, `resolve_when`, `values` and the texts may use, by name: value.
    params: dict[str, float] = field(default_factory=dict)
    # Hysteresis (docs/rules.md): once firing, the warning stays firing until this condition
    # holds (None: until `when` no longer holds) ...
    resolve_when: str | None = None
    # ... on this many evaluated nights in a row plus one (Prometheus' keep_firing_for).
    keep_firing_for: int = 0
    # An unfinished rule (RuleSet.unfinished): a text could not be read, so whether each param is
    # used cannot be told.
    texts_unread: bool = field(default=False, compare=False)

    @property
    def hysteresis(self) -> bool:
        """It resolves on something other than the first night its condition does not hold."""
        return self.resolve_when is not None or self.keep_firing_for > 0


@dataclass(frozen=True)
class RuleSet:
    metrics: dict[str, Metric]
    rules: list[Rule]
    # Only from check_rule_files: metrics written but broken (their problems already reported),
    # known by name so that a rule using one is not also told the metric does not exist.
    broken: frozenset[str] = frozenset()
    # Only from check_rule_files: rules with problems of their own, read as far as they go, so
    # that their conditions, values and texts are checked too (every problem at once).
    unfinished: tuple[Rule, ...] = ()


class _LineLoader(SafeLoader):
    """A YAML loader (safe, within yaml_files' limits) whose mappings remember where each key's value starts."""


class Located(dict):
    """A mapping read from YAML that remembers where each key's value was written (`marks`)."""

    marks: dict


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> Located:
    mapping = Located(loader.construct_mapping(node, deep=True))
    mapping.marks = {key.value: (value.start_mark, getattr(value, "style", None)) for key, value in node.value}
    mapping.marks[None] = (node.start_mark, None)
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def rule_files(paths: Path | list[Path]) -> list[Path]:
    """The rule files named: a folder stands for its *.yaml files (test files, *.test.yaml, are not rules)."""
    files = []
    for path in [paths] if isinstance(paths, Path) else paths:
        if path.is_dir():
            files += sorted(p for p in path.glob("*.yaml") if not p.name.endswith(".test.yaml"))
        elif path.is_file():
            files.append(path)
        else:
            raise RuleError(f"{path}: no such rule file or folder")
    return files


def load_rules(paths: Path | list[Path]) -> RuleSet:
    """Read and check the rule files; the first problem raises RuleError."""
    problems: list[RuleError] = []
    ruleset = _read(paths, problems)
    if problems:
        raise problems[0]
    return ruleset


def check_rule_files(paths: Path | list[Path]) -> tuple[RuleSet, list[RuleError]]:
    """Every problem of every file (one per rule, metric or file), for `loyalty rules check`."""
    problems: list[RuleError] = []
    return _read(paths, problems), problems


def _read(paths: Path | list[Path], problems: list[RuleError]) -> RuleSet:
    metrics: dict[str, Metric] = {}
    rules: list[Rule] = []
    seen: dict[str, Where] = {}
    broken: set[str] = set()
    unfinished: list[Rule] = []
    for path in rule_files(paths):
        try:
            file_metrics, file_rules = _load_file(path, problems, broken, unfinished)
        except RuleError as problem:
            problems.append(problem)
            continue
        for name, metric in file_metrics.items():
            if name in metrics and _same_place(metrics[name], metric) != metric:
                problems.append(RuleError(f"{metric.where}: metric '{name}' is already defined differently at {metrics[name].where}"))
            metrics.setdefault(name, metric)
        for rule in file_rules:
            if rule.id in seen:
                problems.append(RuleError(f"{rule.where}: rule id '{rule.id}' is already used at {seen[rule.id]}"))
                continue
            seen[rule.id] = rule.where
            rules.append(rule)
    for rule in rules:
        for hidden in rule.inhibits:
            if hidden == rule.id or hidden not in seen:
                problem = "a rule cannot inhibit itself" if hidden == rule.id else f"unknown rule '{hidden}'{did_you_mean(hidden, seen)}"
                problems.append(RuleError(f"{rule.places['inhibits']}: inhibits: {problem}"))
    return RuleSet(metrics, rules, frozenset(broken - set(metrics)), tuple(unfinished))


def _same_place(existing: Metric, other: Metric) -> Metric:
    """`existing` as if written at `other`'s place, so equal definitions in two files compare equal."""
    return Metric(**{**existing.__dict__, "where": other.where})


def read_located(path: Path):
    """A YAML file whose mappings remember where each key was written; one-line RuleError if
    unreadable, too large, too deep or not plain data. Rule files, rule tests and snoozes.yaml
    are all read here."""
    return load_yaml(path, RuleError, _LineLoader)[1]


def _load_file(
    path: Path, problems: list[RuleError], broken: set[str], unfinished: list[Rule]
) -> tuple[dict[str, Metric], list[Rule]]:
    """A file's metrics and rules; a broken metric or rule is noted in problems and left out
    (the metric's name in `broken`, the rule as far as it could be read in `unfinished`)."""
    doc = read_located(path)
    if doc is None:
        return {}, []
    if not isinstance(doc, Located):
        raise RuleError(f"{path}:1:1: expected a mapping with 'metrics' and 'rules'")
    only_keys(path, doc, {"metrics", "rules"})
    metrics = {}
    raw_metrics = doc.get("metrics") or {}
    if raw_metrics and not isinstance(raw_metrics, Located):
        raise RuleError(f"{at(path, doc, 'metrics')}: 'metrics' must be a mapping of name: definition")
    for name, spec in raw_metrics.items():
        try:
            metrics[name] = _metric(path, raw_metrics, name, spec)
        except RuleError as problem:
            problems.append(problem)
            broken.add(str(name))
    raw_rules = doc.get("rules") or []
    if not isinstance(raw_rules, list):
        raise RuleError(f"{at(path, doc, 'rules')}: 'rules' must be a list of rules")
    rules = []
    for spec in raw_rules:
        if not isinstance(spec, Located):
            problems.append(RuleError(f"{at(path, doc, 'rules')}: each rule must be a mapping with id, severity, when, …"))
            continue
        try:
            rules.append(_rule(path, spec))
        except RuleError as problem:
            problems.extend(getattr(problem, "problems", None) or [problem])
            if getattr(problem, "rule", None) is not None:
                unfinished.append(problem.rule)
    return metrics, rules


def _metric(path: Path, parent: Located, name: str, spec) -> Metric:
    here = at(path, parent, name)
    if not _ID.match(str(name)):
        raise RuleError(f"{here}: metric name '{name}' must be lower_case letters, digits and _")
    if name in BUILTINS:
        raise RuleError(f"{here}: '{name}' is a built-in metric; choose another name")
    if not isinstance(spec, Located):
        raise RuleError(f"{here}: metric '{name}' must be a mapping such as {{count: orders, window: 90d}}")
    written = [k for k in KINDS if k in spec]
    if len(written) != 1:
        other_keys = {*_METRIC_KEYS, *(key for kind in KINDS.values() for key in kind.options)}
        unknown = [k for k in spec if k not in KINDS and k not in other_keys]
        if unknown:
            raise RuleError(f"{at(path, spec, unknown[0])}: unknown key '{unknown[0]}'{did_you_mean(str(unknown[0]), KINDS)} (a metric is one of {', '.join(KINDS)})")
        raise RuleError(f"{here}: metric '{name}' needs exactly one of {', '.join(KINDS)}")
    kind_name = written[0]
    kind = KINDS[kind_name]
    if not kind.reads_rows:
        only_keys(path, spec, {kind_name})
        table, column = "accounts", str(spec[kind_name]).removeprefix("accounts.")
        if column not in [c.name for c in TABLES["accounts"].columns]:
            known = ", ".join(c.name for c in TABLES["accounts"].columns)
            raise RuleError(f"{at(path, spec, kind_name)}: unknown account attribute '{column}'{did_you_mean(column, known.split(', '))} (known: {known})")
        return Metric(name, kind_name, table, column, None, Span(0, "d"), place(path, parent, name))
    only_keys(path, spec, {kind_name, *_METRIC_KEYS, *kind.options})
    table, column = _target(path, spec, kind_name, kind)
    window = None
    if "window" in spec:
        window = Span.parse(spec["window"])
        if window is None or window.amount == 0:
            raise RuleError(
                f"{at(path, spec, 'window')}: window must look like 90d, 12w, 6m or 1y (at most 100 years), got {spec['window']!r}"
            )
    elif kind.needs_window:
        raise RuleError(f"{here}: {kind_name} metric '{name}' needs a window, e.g. window: 90d")
    ending = Span(0, "d")
    if "ending" in spec:
        ending = Span.parse(spec["ending"], _ENDING)
        if ending is None:
            raise RuleError(f"{at(path, spec, 'ending')}: ending must look like '90d ago' (at most 100 years), got {spec['ending']!r}")
    filter_text, filter_place = None, None
    if "where" in spec:
        filter_text, filter_place = str(spec["where"]), _expression_place(path, spec, "where")
    options = _options(path, spec, kind, here, f"{kind_name} metric '{name}'")
    return Metric(name, kind_name, table, column, window, ending, place(path, parent, name), filter_text, filter_place, options)


def _target(path: Path, spec: Located, kind_name: str, kind: Kind) -> tuple[str, str | None]:
    """The table (and column) a metric reads, checked against the data contract."""
    target = str(spec[kind_name])
    table, _, column = target.partition(".")
    here = at(path, spec, kind_name)
    events = [t for t in TABLES if TABLES[t].event_date]
    if table not in events:
        raise RuleError(f"{here}: unknown table '{table}'{did_you_mean(table, events)} (known: {', '.join(events)})")
    contract = TABLES[table]
    if kind.takes is Takes.TABLE:
        if column:
            raise RuleError(f"{here}: {kind_name} takes {kind.takes.value}, not '{target}' (e.g. {kind_name}: {table})")
        return table, None
    wanted = [c.name for c in contract.columns + contract.derived if kind.takes is not Takes.NUMBER_COLUMN or c.kind == "number"]
    wanted = [c for c in wanted if c not in ("account_id", contract.event_date)]
    if column not in wanted:
        hint = f"'{column}'{did_you_mean(column, wanted)}; " if column else ""
        raise RuleError(f"{here}: {kind_name} needs table.column with {kind.takes.value}, {hint}known for {table}: {', '.join(wanted)}")
    return table, column


def _options(path: Path, spec: Located, kind: Kind, here: Where, what: str) -> tuple[tuple[str, object], ...]:
    """The kind's own keys (such as `per: month`), each read by the kind's parser."""
    options = []
    for key, option in kind.options.items():
        value = option.default if key not in spec else option.parse(str(spec[key]))
        if key not in spec and value is None:
            raise RuleError(f"{here}: {what} needs {key}: {option.looks_like}")
        if value is None:
            raise RuleError(f"{at(path, spec, key)}: {key} must be {option.looks_like}, got {spec[key]!r}")
        options.append((key, value))
    return tuple(options)


def did_you_mean(word: str, known) -> str:
    """' (did you mean 'when'?)' for a word close to one known, else ''."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.7)
    return f" (did you mean '{close[0]}'?)" if close else ""




class RuleProblems(RuleError):
    """Several problems of one rule, found at once: a misspelt severity must not hide behind a misspelt key.

    `rule`: the rule as far as it could be read, so its conditions and texts can be checked too."""

    def __init__(self, problems: list[RuleError], rule: "Rule | None" = None) -> None:
        super().__init__(problems[0].args[0])
        self.problems = [p for problem in problems for p in getattr(problem, "problems", None) or [problem]]
        self.rule = rule


def _rule(path: Path, spec: Located) -> Rule:
    # The checks of single keys are independent: each problem is collected, then all are raised.
    found: list[RuleError] = []
    allowed = {"id", "severity", "when", "for", "params", "resolve_when", "keep_firing_for", "values", "labels", "inhibits",
               "title", "message", "action", "enabled", "mode"}
    found += [
        RuleError(f"{at(path, spec, key)}: unknown key '{key}'{did_you_mean(str(key), map(str, allowed))} (allowed: {', '.join(sorted(map(str, allowed)))})")
        for key in spec if key not in allowed
    ]
    missing = [key for key in ("id", "severity", "when", "title", "message", "action") if key not in spec]
    found += [RuleError(f"{at(path, spec, None)}: rule is missing required key '{key}'") for key in missing]
    rule_id = str(spec.get("id", "?"))
    if "id" in spec and not _ID.match(rule_id):
        found.append(RuleError(f"{at(path, spec, 'id')}: rule id '{rule_id}' must be lower_case letters, digits and _"))
    if "severity" in spec and spec["severity"] not in SEVERITIES:
        found.append(RuleError(f"{at(path, spec, 'severity')}: severity must be one of {', '.join(SEVERITIES)}, got {spec['severity']!r}"))
    if not isinstance(spec.get("enabled", True), bool):
        found.append(RuleError(f"{at(path, spec, 'enabled')}: enabled must be true or false"))
    mode = spec.get("mode", "live")
    if mode not in MODES:
        found.append(RuleError(f"{at(path, spec, 'mode')}: mode must be one of {', '.join(MODES)}, got {mode!r}{did_you_mean(str(mode), MODES)}"))
    values = spec.get("values") or {}
    if values and not isinstance(values, Located):
        found.append(RuleError(f"{at(path, spec, 'values')}: values must be a mapping of name: expression"))
        values = {}
    for_nights = 1
    if "for" in spec:
        match = _FOR.match(str(spec["for"]))
        if not match or not 1 <= int(match.group(1)) <= 366:
            found.append(RuleError(f"{at(path, spec, 'for')}: for must look like '3 nights' (1 to 366), got {spec['for']!r}"))
        else:
            for_nights = int(match.group(1))
    keep_firing_for = 0
    if "keep_firing_for" in spec:
        match = _FOR.match(str(spec["keep_firing_for"]))
        if not match or not 1 <= int(match.group(1)) <= 366:
            found.append(RuleError(
                f"{at(path, spec, 'keep_firing_for')}: keep_firing_for must look like '3 nights' (1 to 366), got {spec['keep_firing_for']!r}"
            ))
        else:
            keep_firing_for = int(match.group(1))
    labels = spec.get("labels") or {}
    if not isinstance(labels, dict) or any(isinstance(v, (dict, list)) for v in labels.values()):
        found.append(RuleError(f"{at(path, spec, 'labels')}: labels must be a mapping of name: text, e.g. {{team: field-sales}}"))
        labels = {}
    inhibits = spec.get("inhibits") or []
    if isinstance(inhibits, str):
        inhibits = [inhibits]
    if not isinstance(inhibits, list) or not all(isinstance(i, str) for i in inhibits):
        found.append(RuleError(f"{at(path, spec, 'inhibits')}: inhibits must be a list of rule ids, e.g. [falling_order_value]"))
        inhibits = []
    params, bad_params = _params(path, spec, found)
    places = {"when": _expression_place(path, spec, "when")} if "when" in spec else {}
    if "resolve_when" in spec:
        places["resolve_when"] = _expression_place(path, spec, "resolve_when")
    places.update({f"params.{name}": place(path, spec["params"], name) for name in [*params, *bad_params]})
    if inhibits:
        places["inhibits"] = _expression_place(path, spec, "inhibits")
    places.update({f"values.{name}": _expression_place(path, values, name) for name in values})
    texts, texts_unread = {}, False
    for key in ("title", "message", "action"):
        try:
            texts[key] = _texts(path, spec, key, found) if key in spec else {}
        except RuleError as problem:
            found.append(problem)
            texts[key] = {}
        texts_unread = texts_unread or key not in spec or len(texts[key]) < len(LANGUAGES if isinstance(spec[key], str) else spec[key])
        for language in texts[key]:
            located = isinstance(spec[key], Located)
            places[f"{key}.{language}"] = _expression_place(path, spec[key], language) if located else _expression_place(path, spec, key)
    if "when" not in spec:
        raise RuleProblems(found)
    rule = Rule(
        id=rule_id,
        severity=str(spec.get("severity")),
        when=str(spec["when"]),
        values={str(k): str(v) for k, v in values.items()},
        enabled=spec.get("enabled", True),
        where=place(path, spec, None),
        for_nights=for_nights,
        labels={str(k): str(v) for k, v in labels.items()},
        inhibits=tuple(inhibits),
        places=places,
        mode=str(mode),
        # A param that is not a number still counts as a name the rule defines: its uses are no
        # "unknown metric" (None: its value is wrong, reported already).
        params={**params, **{name: None for name in bad_params}},
        resolve_when=str(spec["resolve_when"]) if "resolve_when" in spec else None,
        keep_firing_for=keep_firing_for,
        texts_unread=texts_unread,
        **texts,
    )
    if found:
        raise RuleProblems(found, rule)
    return rule


def _params(path: Path, spec: Located, found: list[RuleError]) -> tuple[dict[str, float], list[str]]:
    """The rule's named thresholds: lower_case names, each a plain number (ints stay ints, so
    `{{ min_baseline }}` prints 6, not 6.0); and the names of those that are not, each noted in
    `found`. Whether the rule uses them, and whether a name is taken by a metric, is checked with
    the metrics (compiler.check_rule)."""
    params = spec.get("params")
    if params is None:
        return {}, []
    if not isinstance(params, Located):
        found.append(RuleError(f"{at(path, spec, 'params')}: params must be a mapping of name: number, e.g. {{min_baseline: 6, share: 0.5}}"))
        return {}, []
    checked, bad = {}, []
    for name, value in params.items():
        if not _ID.match(str(name)):
            found.append(RuleError(f"{place(path, params, name)}: param name '{name}' must be lower_case letters, digits and _"))
            bad.append(str(name))
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            shown = str(value).lower() if isinstance(value, bool) else repr(value)  # as YAML writes it
            found.append(RuleError(f"{place(path, params, name)}: param '{name}' must be a number, e.g. 6 or 0.5, got {shown}"))
            bad.append(str(name))
        elif abs(value) > LARGEST_PARAM:
            found.append(RuleError(f"{place(path, params, name)}: param '{name}' = {value} is too large"))
            bad.append(str(name))
        else:
            checked[str(name)] = value
    return checked, bad


def _texts(path: Path, spec: Located, key: str, found: list[RuleError]) -> dict[str, str]:
    """A title, message or action by language; a text that is not a valid template is noted in
    `found` and left out (the others are still checked)."""
    texts = spec[key]
    if isinstance(texts, str):  # one text for every language: its problem once, named by key
        problem = _template_problem(texts)
        if problem:
            found.append(RuleError(f"{at(path, spec, key)}: {key} {problem}"))
            return {}
        return {language: texts for language in LANGUAGES}
    if not isinstance(texts, Located) or not texts:
        raise RuleError(f"{at(path, spec, key)}: {key} must be text or a mapping of language: text (de, en)")
    read = {}
    for language, text in texts.items():
        if language not in LANGUAGES:
            found.append(RuleError(
                f"{at(path, texts, language)}: unknown key '{language}'{did_you_mean(str(language), LANGUAGES)} "
                f"(allowed: {', '.join(sorted(LANGUAGES))})"
            ))
            continue
        problem = _template_problem(str(text))
        if problem:
            found.append(RuleError(f"{at(path, texts, language)}: {key}.{language} {problem}"))
            continue
        read[language] = str(text)
    return read


def _template_problem(text: str) -> str | None:
    """What is wrong with a title, message or action as a template, or None."""
    try:
        template = TEXT_ENV.parse(text)
    except Exception as err:  # jinja2.TemplateSyntaxError: a placeholder written wrong
        return f"is not a valid template ({err})"
    # Only {{ name }} and the text filters with constant arguments (rules/texts.py): no
    # attributes, calls or tags, so a text can only print the account's values.
    for node in template.find_all(nodes.Node):
        if isinstance(node, nodes.Filter) and node.name not in RULE_FILTERS:
            return f"uses an unknown filter '{node.name}' (known: {', '.join(RULE_FILTERS)})"
        if not isinstance(node, (nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Filter, nodes.Const, nodes.Keyword)):
            return f"may only hold placeholders like {{{{ orders_recent }}}} or {{{{ amount | money }}}}, not {type(node).__name__.lower()} expressions"
        if isinstance(node, nodes.Filter) and (
            node.dyn_args or node.dyn_kwargs
            or not all(isinstance(a, nodes.Const) for a in [*node.args, *(k.value for k in node.kwargs)])
        ):
            return f"filter '{node.name}' takes constant arguments only"
    return None


def placeholders(text: str) -> set[str]:
    """The {{ names }} a title, message or action uses."""
    return meta.find_undeclared_variables(TEXT_ENV.parse(text))


def only_keys(path: Path, spec: Located, allowed: set) -> None:
    """Every key of `spec` is one of `allowed`, else a RuleError at the first that is not."""
    for key in spec:
        if key not in allowed:
            raise RuleError(
                f"{at(path, spec, key)}: unknown key '{key}'{did_you_mean(str(key), map(str, allowed))} "
                f"(allowed: {', '.join(sorted(map(str, allowed)))})"
            )


def place(path: Path, spec: Located, key) -> Where:
    """Where `key`'s value was written in the file (None: where the mapping starts)."""
    mark = spec.marks.get(key, spec.marks[None])[0]
    return Where(path, mark.line + 1, mark.column + 1)


def at(path: Path, spec, key) -> Where | Path:
    """As `place`, or only the file when `spec` was not a mapping, for error messages."""
    return place(path, spec, key) if isinstance(spec, Located) else path


def _expression_place(path: Path, spec: Located, key: str) -> Where:
    """Where the expression's first character is, so a column inside it can be added on."""
    mark, style = spec.marks.get(key, spec.marks[None])
    quoted = 1 if style in ('"', "'") else 0
    return Where(path, mark.line + 1, mark.column + 1 + quoted)
