"""Snoozes: ops' decisions not to mail an account's warnings until a date, kept in snoozes.yaml.

The file is the one place for them, so it can be read, reviewed and versioned like the rules;
`loyalty snooze` adds and removes entries by editing it as text, keeping every comment:

    snoozes:
      - id: 1
        account: K-00042
        rule: falling_order_value   # optional: without it, every rule of the account
        until: 2026-12-31           # covers the nights up to and including this date
        reason: Plant shut down until the end of the year
        by: anna.gross              # optional
        created: 2026-11-23         # optional
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import yaml

from loyalty_engine.errors import RuleError
from loyalty_engine.rules.loader import Located, at, did_you_mean, only_keys, read_located

HEADER = """\
# Snoozes: warnings that are evaluated and kept in history but not mailed until a date.
# `loyalty snooze` adds and removes entries; edit by hand if you like (`loyalty rules check`
# checks this file too). A snooze until D covers the nights up to and including D.
snoozes:
"""
KEYS = {"id", "account", "rule", "until", "reason", "by", "created"}


@dataclass(frozen=True)
class Snooze:
    id: int | str  # a number in snoozes.yaml; "V<n>" for an owner's "already known" verdict (feedback/verdicts.py)
    account_id: str
    rule_id: str | None  # None: every rule of the account
    until: date
    reason: str
    by: str | None = None  # who decided: ops' name, or the owner's address
    created: date | None = None


def load_snoozes(path: Path, rule_ids: set[str] | None = None) -> list[Snooze]:
    """The snoozes in the file (none if it does not exist); the first problem raises RuleError."""
    snoozes, problems = check_snoozes(path, rule_ids)
    if problems:
        raise problems[0]
    return snoozes


def check_snoozes(path: Path, rule_ids: set[str] | None = None) -> tuple[list[Snooze], list[RuleError]]:
    """Every snooze and every problem of the file: file:line:column and what is wrong."""
    if not path.exists():
        return [], []
    try:
        doc = read_located(path)
    except RuleError as problem:
        return [], [problem]
    if doc is None:
        return [], []
    if not isinstance(doc, Located) or set(doc) - {"snoozes"}:
        return [], [RuleError(f"{at(path, doc, None)}: expected a mapping with one key, 'snoozes'")]
    entries = doc.get("snoozes") or []
    if not isinstance(entries, list):
        return [], [RuleError(f"{at(path, doc, 'snoozes')}: 'snoozes' must be a list")]
    snoozes, problems, seen = [], [], set()
    for entry in entries:
        try:
            snooze = _snooze(path, entry, rule_ids)
            if snooze.id in seen:
                raise RuleError(f"{at(path, entry, 'id')}: snooze id {snooze.id} is used twice")
            seen.add(snooze.id)
            snoozes.append(snooze)
        except RuleError as problem:
            problems.append(problem)
    return snoozes, problems


def _snooze(path: Path, entry, rule_ids: set[str] | None) -> Snooze:
    if not isinstance(entry, Located):
        raise RuleError(f"{path}: each snooze must be a mapping with id, account, until and reason")
    only_keys(path, entry, KEYS)
    for key in ("id", "account", "until", "reason"):
        if entry.get(key) in (None, ""):
            raise RuleError(f"{at(path, entry, None)}: snooze is missing required key '{key}'")
    if not isinstance(entry["id"], int) or isinstance(entry["id"], bool) or entry["id"] < 1:
        raise RuleError(f"{at(path, entry, 'id')}: id must be a whole number from 1, got {entry['id']!r}")
    dates = {}
    for key in ("until", "created"):
        value = entry.get(key)
        if value is None or isinstance(value, date):
            dates[key] = value
            continue
        try:
            dates[key] = date.fromisoformat(str(value))
        except ValueError:
            raise RuleError(f"{at(path, entry, key)}: {key} must be a date like 2026-12-31, got {value!r}") from None
    rule = entry.get("rule")
    if rule is not None and rule_ids is not None and rule not in rule_ids:
        raise RuleError(f"{at(path, entry, 'rule')}: unknown rule '{rule}'{did_you_mean(str(rule), rule_ids)}")
    return Snooze(
        id=entry["id"],
        account_id=str(entry["account"]),
        rule_id=None if rule is None else str(rule),
        until=dates["until"],
        reason=" ".join(str(entry["reason"]).split()),
        by=None if entry.get("by") is None else str(entry["by"]),
        created=dates["created"],
    )


def add_snooze(path: Path, account_id: str, rule_id: str | None, until: date, reason: str, by: str | None, created: date) -> Snooze:
    """Append a snooze to the file (created with a header if missing); returns it with its new id."""
    existing = load_snoozes(path)
    snooze = Snooze(max((s.id for s in existing), default=0) + 1, account_id, rule_id, until, " ".join(reason.split()), by, created)
    entry = {"id": snooze.id, "account": account_id}
    if rule_id:
        entry["rule"] = rule_id
    entry.update(until=until, reason=snooze.reason)
    if by:
        entry["by"] = by
    entry["created"] = created
    block = yaml.safe_dump([entry], allow_unicode=True, sort_keys=False, default_flow_style=False, width=1000)
    block = "".join(f"  {line}\n" for line in block.splitlines())
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    sequence = _sequence_node(text)
    if sequence is None:
        text = (text.rstrip("\n") + "\n" if text.strip() else HEADER.removesuffix("snoozes:\n")) + "snoozes:\n" + block
    elif not sequence.value or sequence.flow_style:
        # `snoozes: []` or empty: the list becomes a block list holding the new entry.
        text = text[: sequence.start_mark.index].rstrip(" ") + "\n" + block + text[sequence.end_mark.index :].lstrip("\n")
    else:
        lines = text.splitlines(keepends=True)
        end = _last_line(sequence)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        text = "".join(lines[:end] + [block] + lines[end:])
    _write(path, text)
    return snooze


def remove_snooze(path: Path, snooze_id: int) -> Snooze:
    """Delete the snooze's lines from the file; RuleError if there is no such id."""
    existing = {s.id: s for s in load_snoozes(path)}
    if snooze_id not in existing:
        raise RuleError(f"{path}: no snooze with id {snooze_id} (ids: {', '.join(map(str, sorted(existing))) or 'none'})")
    text = path.read_text(encoding="utf-8")
    sequence = _sequence_node(text)
    items = sequence.value
    index = next(i for i, item in enumerate(items) if _item_id(item) == snooze_id)
    lines = text.splitlines(keepends=True)
    if sequence.flow_style:
        raise RuleError(f"{path}: snoozes written as a [flow list]; remove snooze {snooze_id} by editing the file")
    first = items[index].start_mark.line
    last = items[index + 1].start_mark.line if index + 1 < len(items) else _last_line(sequence)
    _write(path, "".join(lines[:first] + lines[last:]))
    return existing[snooze_id]


def _sequence_node(text: str) -> yaml.SequenceNode | None:
    root = yaml.compose(text) if text.strip() else None
    if not isinstance(root, yaml.MappingNode):
        return None
    for key, value in root.value:
        if key.value == "snoozes":
            return value if isinstance(value, yaml.SequenceNode) else yaml.SequenceNode("tag:yaml.org,2002:seq", [], value.start_mark, value.end_mark, flow_style=True)
    return None


def _last_line(sequence: yaml.SequenceNode) -> int:
    """The line after the sequence's last item (0-based), trailing comments left where they are."""
    last = sequence.value[-1]
    return last.end_mark.line + (1 if last.end_mark.column > 0 else 0)


def _item_id(item: yaml.Node):
    if isinstance(item, yaml.MappingNode):
        for key, value in item.value:
            if key.value == "id":
                return int(value.value) if value.value.isdigit() else None
    return None


def _write(path: Path, text: str) -> None:
    """Write the whole file at once: a reader (the nightly run) never sees half an edit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
