"""The worked example in docs/rules.md works as written: check, test and explain."""

from __future__ import annotations

import re
import shutil
import textwrap
from datetime import date

from loyalty_engine.rules.evaluate import prove_rules
from loyalty_engine.rules.loader import check_rule_files
from loyalty_engine.rules.testing import run_rule_tests
from tests.support.builders import ROOT


def example(name: str) -> str:
    """The YAML block that follows the first mention of `name` in docs/rules.md."""
    text = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    after = text[text.index(f"`{name}`"):]
    block = re.search(r"```yaml\n(.*?)```", after, flags=re.DOTALL).group(1)
    return textwrap.dedent(block)


def test_the_worked_example_checks_and_its_test_passes(tmp_path):
    for path in (ROOT / "rules").glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "basket.yaml").write_text(example("rules/basket.yaml"), encoding="utf-8")
    (tmp_path / "basket.test.yaml").write_text(example("rules/basket.test.yaml"), encoding="utf-8")
    ruleset, problems = check_rule_files([tmp_path])
    prove_rules(ruleset, date(2026, 11, 23), problems)
    assert problems == []
    [result] = run_rule_tests(tmp_path / "basket.test.yaml")
    assert result.passed, (result.missing, result.unexpected, result.wrong_values)
    assert result.name == "an A customer whose orders halved"
