"""The whole night as Prefect runs it: extracts → DuckDB → pandera → rules → digests over real SMTP.

One Prefect test server serves the whole session (it takes ~18 s to start); stage functions are
tested on their own elsewhere, so only what needs a real flow run is here.
"""

from __future__ import annotations

import email
from email import policy

import duckdb
import pytest

from loyalty_engine.gate import GateFailed
from tests.support.builders import NIGHT, write_config, write_extract, write_table
from tests.support.builders import Extract, every, fading, steady

pytestmark = pytest.mark.usefixtures("prefect_harness")


def night_extract(root):
    """Two owners with warnings (one with three accounts, two of them pending: their rules wait
    `for: 3 nights`), one owner without, and one bad row."""
    x = Extract()
    x.order_on(x.account("A1", owner="anna"), *fading())                          # falling orders: pending
    x.complaint_on(x.account("A2", owner="anna"), *every(30, 450, 120))           # resignation: pending
    x.order_on("A2", 30)
    for account, owner in (("A3", "anna"), ("B1", "bernd")):                      # 24 → 12 months, renewed
        x.account(account, owner=owner)                                           # 53 days ago: fires
        x.contract(account, "2024-10-01", "2026-09-30")
        x.contract(account, "2026-10-01", "2027-09-30")
    x.order_on(x.account("C1", owner="carla"), *steady(30))                      # steady: quiet
    x.accounts[3]["name"] = "<script>alert('Müller')</script> GmbH"  # B1, whose warning fires tonight
    orders = x.orders + [{"order_id": "BAD", "account_id": "A1", "order_date": "2026-11-01", "amount": "-3", "currency": "EUR"}]
    return write_extract(root, accounts=x.accounts, orders=orders, complaints=x.complaints, contracts=x.contracts)


@pytest.fixture
def smtp_project(tmp_path, smtp_server):
    night_extract(tmp_path / "extracts")
    config = write_config(tmp_path, mode="smtp", smtp=f"{{host: {smtp_server.host}, port: {smtp_server.port}, security: none}}")
    return config, smtp_server


def test_a_night_mails_one_digest_per_owner_with_warnings_and_nothing_on_a_rerun(smtp_project):
    from flows.nightly import nightly

    config, server = smtp_project
    summary = nightly(config_path=str(config), night=NIGHT)

    assert {c.table: (c.rows_loaded, c.rows_quarantined) for c in summary.tables}["orders"] == (57, 1)
    assert {rule: count for rule, count in summary.warnings.items() if count} == {
        "falling_order_frequency": 1, "shorter_contracts": 2, "sudden_zero_complaints": 1,
    }  # fmt: skip
    # The extract has no interactions or surveys: their rules are skipped, with the reason.
    assert summary.skipped["nps_detractor"] == "needs the optional table surveys, absent tonight"
    assert len(summary.skipped) == 6 and len(summary.warnings) == 7
    # sudden_zero_complaints and falling_order_frequency (a shadow rule) wait `for: 3 nights`.
    assert summary.notices == {"new": 2, "pending": 1, "shadow pending": 1}
    assert sorted(summary.delivery.sent) == ["anna@example.com", "bernd@example.com"]
    assert sorted(server.recipients()) == ["anna@example.com", "bernd@example.com"]

    anna = next(email.message_from_bytes(m.content, policy=policy.default) for m in server.messages if m.rcpt_tos == ["anna@example.com"])
    assert anna["Subject"] == "Frühwarnung 23.11.2026: 1 neues Warnsignal bei einem Kunden"
    assert anna.get_content_type() == "multipart/alternative"
    text = anna.get_body(("plain",)).get_content()
    html = anna.get_body(("html",)).get_content()
    assert "Kürzere Vertragslaufzeit" in text
    assert "Bestellfrequenz sinkt" not in text and "Beschwerden bleiben plötzlich aus" not in text
    assert "Ihr Portfolio: 4 Kunden beobachtet" not in text and "Ihr Portfolio: 3 Kunden beobachtet, 1 mit offenen Warnsignalen" in text
    bernd = next(email.message_from_bytes(m.content, policy=policy.default) for m in server.messages if m.rcpt_tos == ["bernd@example.com"])
    html = bernd.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html

    again = nightly(config_path=str(config), night=NIGHT)
    assert again.delivery.sent == [] and sorted(again.delivery.skipped) == ["anna@example.com", "bernd@example.com"]
    assert len(server.messages) == 2


def test_a_missing_column_stops_the_night_mails_no_owner_and_tells_ops(tmp_path, smtp_server):
    from flows.nightly import nightly

    folder = night_extract(tmp_path / "extracts")
    write_table(folder, "orders", [], columns=["order_id", "account_id", "order_date", "currency"])
    config = write_config(tmp_path, mode="smtp", smtp=f"{{host: {smtp_server.host}, port: {smtp_server.port}}}")
    config.write_text(config.read_text().replace("  retries: 0", "  retries: 0\n  ops_recipients: [ops@example.com]"))
    with pytest.raises(GateFailed, match=r"orders.csv: missing required column 'amount'"):
        nightly(config_path=str(config), night=NIGHT)
    [notice] = smtp_server.messages
    assert notice.rcpt_tos == ["ops@example.com"]
    message = email.message_from_bytes(notice.content, policy=policy.default)
    assert message["Subject"] == "Frühwarnung 23.11.2026: Nacht angehalten, keine Digests versandt (orders schema)"
    assert "missing required column 'amount'" in message.get_content()
    with duckdb.connect(str(tmp_path / "data" / "loyalty.duckdb")) as con:
        assert con.execute("SELECT count(*) FROM nights").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM warning_nights").fetchone() == (0,)
    # Run again with the same broken extract: ops are not told twice.
    with pytest.raises(GateFailed):
        nightly(config_path=str(config), night=NIGHT)
    assert len(smtp_server.messages) == 1


def test_outbox_mode_writes_eml_files_for_the_newest_extract_night(tmp_path):
    from flows.nightly import nightly

    night_extract(tmp_path / "extracts")
    config = write_config(tmp_path)
    summary = nightly(config_path=str(config))
    assert summary.night == NIGHT
    files = sorted(p.name for p in (tmp_path / "outbox" / NIGHT.isoformat()).glob("*.eml"))
    assert files == ["anna@example.com.eml", "bernd@example.com.eml"]


def test_the_summary_is_published_as_artifacts(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.nightly import nightly

    night_extract(tmp_path / "extracts")
    nightly(config_path=str(write_config(tmp_path)), night=NIGHT)
    with get_client(sync_client=True) as client:
        [summary] = client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["nightly-summary"])))
    assert "| falling_order_frequency | 1 |" in summary.data and "Digests: 2 sent" in summary.data


def test_the_served_deployment_carries_the_configured_cron_and_time_zone(tmp_path):
    from prefect.client.orchestration import get_client

    from flows.serving import nightly_deployment
    from loyalty_engine.config import load_settings

    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("cron: '0 6 * * *'", "cron: '30 2 * * 1-5'"))
    deployment_id = nightly_deployment(load_settings(config)).apply()
    with get_client(sync_client=True) as client:
        stored = client.read_deployment(deployment_id)
    [schedule] = stored.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 2 * * 1-5", "Europe/Berlin")
    assert stored.parameters == {"config_path": str(config.resolve())}
