"""Hostile input: YAML files that try to build objects or exhaust the reader, names and texts that
carry markup, Jinja or control characters, owner fields that try to add mail headers. Each ends
as a one-line error or as plain text in the digest; nothing reaches a header it should not."""

from __future__ import annotations

import email
import email.policy
import os
import re
import subprocess
import sys
from dataclasses import replace
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml

from loyalty_engine.config import load_settings
from loyalty_engine.errors import ConfigError, RuleError, UserError
from loyalty_engine.rules.loader import check_rule_files, load_rules
from loyalty_engine.rules.testing import run_rule_tests
from loyalty_engine.snoozes import load_snoozes
from loyalty_engine.yaml_files import MAX_BYTES, MAX_DEPTH
from tests.conftest import ROOT

LOYALTY = str(Path(sys.executable).with_name("loyalty"))

# --- YAML files --------------------------------------------------------------------------------

CONFIG = """\
extracts: {path: extracts}
database: data/loyalty.duckdb
rules: rules
email: {sender: a@example.com}
"""
RULES = (ROOT / "rules" / "orders.yaml").read_text(encoding="utf-8")
SNOOZES = "snoozes:\n  - {id: 1, account: A1, until: 2026-12-31, reason: Werksferien}\n"
RULE_TEST = "tests:\n  - name: quiet\n    night: 2026-11-23\n    expect: []\n"


def _read_rules(folder: Path, text: str) -> None:
    (folder / "rules").mkdir(parents=True, exist_ok=True)
    (folder / "rules" / "orders.yaml").write_text(text, encoding="utf-8")
    load_rules(folder / "rules")


def _read_config(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(text, encoding="utf-8")
    load_settings(folder / "config.yaml")


def _read_snoozes(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "snoozes.yaml").write_text(text, encoding="utf-8")
    load_snoozes(folder / "snoozes.yaml")


def _read_rule_test(folder: Path, text: str) -> None:
    (folder / "rules").mkdir(parents=True, exist_ok=True)
    (folder / "rules" / "orders.yaml").write_text(RULES, encoding="utf-8")
    (folder / "rules" / "orders.test.yaml").write_text(text, encoding="utf-8")
    run_rule_tests(folder / "rules" / "orders.test.yaml")


# Each reader: how to read, the file it reads, a good file (which must load), the error it raises.
READERS = {
    "rule file": (_read_rules, "rules/orders.yaml", RULES, RuleError),
    "config.yaml": (_read_config, "config.yaml", CONFIG, ConfigError),
    "snoozes.yaml": (_read_snoozes, "snoozes.yaml", SNOOZES, RuleError),
    "rule test": (_read_rule_test, "rules/orders.test.yaml", RULE_TEST, RuleError),
}


def _laughs() -> str:
    """Nine lines, a billion values once the aliases are expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


# Appended to a good file: the hostile text, how many lines below its start the problem is
# (None: the message names no line), and the rest of the one line it must give.
HOSTILE_YAML = {
    "python tag": ("evil: !!python/object/apply:os.system [echo pwned]\n", 0,
                   ":7: the tag !!python/object/apply:os.system is not allowed: only plain text, numbers, dates, lists and mappings"),
    "python name tag": ("evil: !!python/name:os.system\n", 0,
                        ":7: the tag !!python/name:os.system is not allowed: only plain text, numbers, dates, lists and mappings"),
    # The root mapping is level 1, so the 50th bracket is level 51.
    "10,000 deep flow list": ("evil: " + "[" * 10_000 + "]" * 10_000 + "\n", 0, ":56: nested deeper than 50 levels"),
    "60 deep block mapping": ("evil:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(60)) + "  " * 61 + "x\n", 50,
                              ":101: nested deeper than 50 levels"),
    "billion laughs": (_laughs(), 5, ":5: stands for more than 1,000,000 values once its aliases (*name) are expanded"),
    "alias inside itself": ("evil: &e [*e]\n", 0, ":11: an alias refers to a list or mapping that contains it"),
    "impossible date": ("evil: 2026-02-30\n", 0, ":7: '2026-02-30' cannot be read as a date (day is out of range for month)"),
    "NUL character": ("evil: a\x00\n", 0, ":8: not valid YAML (character #x0000 is not allowed)"),
    "over 1 MB": ("evil: " + "x" * MAX_BYTES + "\n", None, ": {what} is larger than 1 MB"),
}


@pytest.mark.parametrize("hostile", HOSTILE_YAML, ids=list(HOSTILE_YAML))
@pytest.mark.parametrize("reader", READERS, ids=list(READERS))
def test_hostile_yaml_is_one_line_naming_the_file(tmp_path, reader, hostile):
    read, name, good, error = READERS[reader]
    read(tmp_path / "good", good)
    text, below, rest = HOSTILE_YAML[hostile]
    with pytest.raises(error) as raised:
        read(tmp_path / "bad", good + text)
    line = "" if below is None else f":{good.count(chr(10)) + 1 + below}"
    what = "config file" if error is ConfigError else "file"
    assert str(raised.value) == f"{tmp_path / 'bad' / name}{line}{rest.format(what=what)}"


def test_pyyaml_alone_overflows_the_stack_on_deep_nesting_which_is_why_depth_is_counted():
    deep = "[" * 10_000 + "]" * 10_000
    with pytest.raises(RecursionError):
        yaml.safe_load(deep)
    list(yaml.parse(deep))  # the parser itself is iterative: only composing recurses


def test_fifty_levels_are_fine_fifty_one_are_not(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG + "extra:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(MAX_DEPTH - 2)) + "  " * MAX_DEPTH + "x\n")
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: extra: unknown key$"):  # 50 levels: read, then checked
        load_settings(path)
    path.write_text(path.read_text().replace("\n" + "  " * MAX_DEPTH + "x\n", "\n" + "  " * MAX_DEPTH + "k:\n" + "  " * (MAX_DEPTH + 1) + "x\n"))
    with pytest.raises(ConfigError, match=rf"config.yaml:{5 + MAX_DEPTH - 1}:\d+: nested deeper than 50 levels$"):
        load_settings(path)


def test_size_is_checked_before_the_whole_file_is_read():
    # /dev/zero never ends: reading it whole would never return.
    with pytest.raises(ConfigError, match=r"^/dev/zero: config file is larger than 1 MB$"):
        load_settings(Path("/dev/zero"))


def test_a_config_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(CONFIG.replace("a@example.com", "M\xfcller <a@example.com>").encode("latin-1"))
    with pytest.raises(ConfigError, match=r"config.yaml: cannot read config file \(not UTF-8 text: byte \d+ is 0xfc\)$"):
        load_settings(path)


def test_control_characters_in_what_an_error_quotes_are_escaped(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "x.yaml").write_text('"rules\\n\\u001b[2J\\u202e": []\n', encoding="utf-8")
    _, [problem] = check_rule_files([tmp_path / "rules"])
    assert str(problem) == f"{tmp_path}/rules/x.yaml:1:1: unknown key 'rules\\n\\x1b[2J\\u202e' (allowed: metrics, rules)"
    assert isinstance(problem, UserError)


def _loyalty(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LOYALTY_CONFIG"}
    return subprocess.run([LOYALTY, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_cli_prints_one_line_for_a_hostile_rule_file_and_a_too_deep_config(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "evil.yaml").write_text("metrics: !!python/object/apply:os.system [touch pwned]\n", encoding="utf-8")
    checked = _loyalty("rules", "check", str(rules), cwd=tmp_path)
    assert (checked.returncode, checked.stdout) == (1, "")
    assert checked.stderr.splitlines() == [
        f"{rules}/evil.yaml:1:10: the tag !!python/object/apply:os.system is not allowed: only plain text, numbers, dates, lists and mappings",
        "1 problem in 1 rule file",
    ]
    assert not (tmp_path / "pwned").exists()

    config = tmp_path / "config.yaml"
    config.write_text(CONFIG + "extra: " + "[" * 10_000 + "]" * 10_000 + "\n", encoding="utf-8")
    result = _loyalty("alerts", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"error: {config}:5:57: nested deeper than 50 levels\n"


def test_cli_prints_one_line_for_an_impossible_date_in_the_snoozes_file(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    (tmp_path / "snoozes.yaml").write_text(SNOOZES.replace("2026-12-31", "2026-02-30"), encoding="utf-8")
    result = _loyalty("snooze", "--list", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 4
    assert result.stderr == f"error: {tmp_path}/snoozes.yaml:2:38: '2026-02-30' cannot be read as a date (day is out of range for month)\n"
