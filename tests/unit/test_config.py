"""config.yaml: the documented keys work; mistakes get one line naming the file, line and key."""

from __future__ import annotations

import pytest

from loyalty_engine.config import load_settings
from loyalty_engine.errors import ConfigError
from tests.support.builders import ROOT


def test_shipped_config_loads_and_resolves_paths_against_its_folder():
    settings = load_settings(ROOT / "config.yaml")
    assert settings.extracts.path == ROOT / "extracts"
    assert settings.database == ROOT / "data" / "loyalty.duckdb"
    assert settings.email.outbox_dir == ROOT / "outbox"
    assert settings.email.smtp.security == "none" and settings.email.smtp.password_env == "LOYALTY_SMTP_PASSWORD"
    assert (settings.digest.language, settings.schedule.cron, settings.schedule.timezone) == ("de", "0 6 * * *", "Europe/Berlin")


def test_loyalty_config_variable_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "elsewhere.yaml"
    path.write_text((ROOT / "config.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("LOYALTY_CONFIG", str(path))
    assert load_settings().database == tmp_path / "data" / "loyalty.duckdb"


BASE = """\
extracts:
  path: extracts
database: data/loyalty.duckdb
rules: rules
email:
  mode: outbox
  outbox_dir: outbox
  sender: a@example.com
  smtp:
    host: localhost
    port: 25
    security: none
digest:
  language: de
"""


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("  mode: outbox\n", "  mode: outbox\n  colour: blue\n", "7: email.colour: unknown key"),
        ("port: 25", "port: twenty-five",
         "11: email.smtp.port: input should be a valid integer, unable to parse string as an integer, got 'twenty-five'"),
        ("security: none", "security: tls", "12: email.smtp.security: must be one of 'none', 'starttls' or 'ssl', got 'tls'"),
        ("database: data/loyalty.duckdb\n", "", "1: database: required key is missing"),
        ("language: de", "language: fr", "14: digest.language: must be one of 'de' or 'en', got 'fr'"),
        ("digest:", "schedule: {timezone: Europe/Berln}\ndigest:", "13: schedule.timezone: not an IANA time zone such as Europe/Berlin, got 'Europe/Berln'"),
        ("digest:", "schedule: {cron: every night}\ndigest:", "13: schedule.cron: not a cron expression (Wrong number of fields), got 'every night'"),
        ("sender: a@example.com", "sender: Frühwarnsystem", "8: email.sender: not one email address such as 'Name <name@example.com>', got 'Frühwarnsystem'"),
    ],
)
def test_config_mistakes_name_line_and_key(tmp_path, old, new, message):
    path = tmp_path / "config.yaml"
    path.write_text(BASE.replace(old, new), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    assert str(error.value) == f"{path}:{message}"


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: cannot read config file \(No such file or directory\)"):
        load_settings(tmp_path / "nope.yaml")


def test_every_mistake_at_once_in_file_order(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(BASE.replace("port: 25", "prot: 25").replace("security: none", "security: tls").replace("language: de", "languag: de"))
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    assert [str(p) for p in error.value.problems] == [
        f"{path}:11: email.smtp.prot: unknown key (did you mean 'email.smtp.port'?)",
        f"{path}:12: email.smtp.security: must be one of 'none', 'starttls' or 'ssl', got 'tls'",
        f"{path}:14: digest.languag: unknown key (did you mean 'digest.language'?)",
    ]


@pytest.mark.parametrize(
    "engine, message",
    [
        ("engine: {kind: sparc}", "15: engine.kind: must be one of 'duckdb' or 'spark', got 'sparc'"),
        ("engine: {kind: spark, spark: {mastr: 'local[2]'}}", "15: engine.spark.mastr: unknown key (did you mean 'engine.spark.master'?)"),
        ("engine: {kind: spark, spark: {conf: {driver.memory: 4g}}}", "15: engine.spark.conf: 'driver.memory' is not a Spark setting (they start with 'spark.'), got {'driver.memory': '4g'}"),
    ],
)
def test_engine_mistakes_name_line_and_key(tmp_path, engine, message):
    path = tmp_path / "config.yaml"
    path.write_text(BASE + engine + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    assert str(error.value) == f"{path}:{message}"


def test_the_engine_is_duckdb_unless_config_says_spark(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(BASE, encoding="utf-8")
    assert load_settings(path).engine.kind == "duckdb"
    path.write_text(BASE + "engine:\n  kind: spark\n  spark: {master: 'spark://lake:7077', conf: {spark.executor.memory: 8g}}\n", encoding="utf-8")
    engine = load_settings(path).engine
    assert (engine.kind, engine.spark.master, engine.spark.conf) == ("spark", "spark://lake:7077", {"spark.executor.memory": "8g"})
