"""English: every word an English-speaking reader sees (British English, en_GB formats).

The sections and their keys are the same in every language module (tests/unit/test_i18n.py);
a text with a count maps CLDR plural categories to texts, see the package's docstring.
"""

LOCALE = "en_GB"

# The digest: templates read these as ``ui.<key>``.
DIGEST = {
    "subject": "Early warning {night}: {summary}",
    "new": {"one": "1 new warning sign", "other": "{count} new warning signs"},
    "at": {"one": " at one account", "other": " at {count} accounts"},
    "open": {"one": "1 still open", "other": "{count} still open"},
    "resolved": {"one": "1 resolved", "other": "{count} resolved"},
    "heading": "Early warning for {night}",
    "greeting": "Hello {name},",
    "portfolio": "Your portfolio: {watched} accounts watched, {warned} with open warnings. Retention rate over the last 12 months: {retention}.",
    "ops_intro": "These warnings could not go to an account owner. Please forward them and fix the owner address in the ERP.",
    "section_new": "New warning signs",
    "section_more": "More accounts with new warning signs",
    "section_open": "Still open",
    "section_resolved": "Resolved",
    "since": "since {date}",
    "account_id": "Account ID",
    "segment": "Segment",
    "group": "Group",
    "revenue": "Revenue over the last 12 months: {amount}",
    "months": "{first} – {night}",
    "evidence": "Evidence",
    "action": "Suggested action",
    "routed": "Forwarded: {reason}",
    "attachment": "The complete list is attached as a CSV file.",
    "intro": "Your first early-warning digest: here are the most important of your accounts' open warning signs. From tomorrow on you only hear what is new.",
    "intro_more": {"one": "1 further open warning sign is listed in the attached CSV file.", "other": "{count} further open warning signs are listed in the attached CSV file."},
    "waiting": {"one": "1 further new warning sign waits for a later digest (listed in the attached CSV file).", "other": "{count} further new warning signs wait for a later digest (listed in the attached CSV file)."},
    "attachment_name": "early-warning-{night}.csv",
    "footer": (
        "This message was generated automatically by the loyalty early-warning system "
        "and covers data up to and including {night}."
    ),
    "unknown": "unknown",
    "critical": "critical",
    "high": "high",
    "medium": "medium",
    "low": "low",
    "info": "info",
    "apostle": "Apostle",
    "loyal": "Loyal",
    "opportunist": "Opportunist",
    "hostage": "Hostage",
    "defector": "Defector",
    "terrorist": "Terrorist",
}

# Why a warning went to ops instead of its owner (lifecycle.routing.RouteReason); {value} is the
# owner address or name as the extract wrote it. `loyalty alerts` and `history` print these.
ROUTE_REASONS = {
    "no_owner_address": "account has no owner address",
    "owner_address_invalid": "owner address '{value}' is not valid",
    "owner_name_invalid": "owner name '{value}' is not valid",
    "account_missing": "account missing from tonight's accounts",
}

# The mail to ops when a night stops at the gate or its digests are held.
NOTICES = {
    "failed_subject": "Early warning {night}: night stopped, no digests sent ({first})",
    "held_subject": "Early warning {night}: digests held, {first}",
    "failed_intro": (
        "The extracts for {night} failed the data-quality gate. The night was not evaluated, "
        "nothing was replaced, and no account owner was mailed."
    ),
    "held_intro": (
        "The night {night} was evaluated, but it would warn unusually many accounts for the first "
        "time. The owners' digests are held until someone has looked."
    ),
    "failed_todo": (
        "What to do: check or re-deliver the export, then `loyalty run --date {iso}`. "
        "`loyalty gate --date {iso}` shows the checks again."
    ),
    "held_todo": (
        "What to do: look at the warnings (`loyalty alerts --date {iso}`). If they are right, "
        "`loyalty release --date {iso}` sends the digests. If the data is wrong, re-deliver the "
        "export, then `loyalty run --date {iso}`."
    ),
    "problems": "What is wrong:",
    "all_checks": "All checks:",
}

# The portfolio report (`loyalty report`): the template reads these as ``ui.<key>``.
REPORT = {
    "title": "Portfolio report",
    "subtitle": "Data up to {date}",
    "warnings_as_of": "Warnings as of the night of {date}",
    "kpi_active": "Active accounts",
    "kpi_firing": "with a firing warning",
    "kpi_retention": "Retention, 12 months",
    "kpi_new": "New warnings, {days} days",
    "kpi_gate": "Last data check",
    "of_active": "{share} of active",
    "retention_counts": "{end} customers at the end, {won} won, {start} at the start",
    "history_short": "orders only from {date}: too short a history",
    "new_in_nights": "over {nights} evaluated nights",
    "groups_title": "Account groups",
    "groups_intro": "One dot per active account: satisfaction (latest NPS of the last 2 years) against order frequency (orders in the last 365 days, log scale). Colour: warning state on {date}.",
    "axis_orders": "Orders in the last 365 days (log scale)",
    "axis_nps": "NPS",
    "frequent": "frequent: ≥ {n}",
    "no_survey": "No survey in the last 2 years: {n} accounts",
    "firing": "warning firing",
    "pending": "warning pending",
    "shadow": "shadow rule only (on trial)",
    "none": "no warning",
    "apostle": "Apostles",
    "loyal": "Loyal",
    "opportunist": "Opportunists",
    "hostage": "Hostages",
    "defector": "Defectors",
    "terrorist": "Terrorists",
    "group_note": "Lines as in rules/groups.py: frequent from {frequent} orders a year, satisfied from NPS 7, apostles from NPS 9, terrorists up to NPS 3 (or from {angry} complaints a year). Without a survey, the number of complaints decides the group.",
    "point": "{name} ({id}) · {orders} orders · NPS {nps} · {group} · {state}",
    "point_no_survey": "{name} ({id}) · {orders} orders · no survey · {group} · {state}",
    "retention_title": "Retention rate by month",
    "retention_intro": "(Customers at the month's end − customers won in the month) / customers at its start. A customer is an account that ordered in the 365 days up to the date; one won placed its first order ever in the month.",
    "retention_row": "%",
    "retention_partial": "The last month runs up to {date}.",
    "retention_short": "For {n} months the order history does not reach back far enough (it starts on {date}).",
    "retention_month": "{month}: {rate} · {start} customers at the start, {won} won, {end} at the end",
    "retention_none": "No orders in this period.",
    "warnings_title": "New warnings, last {days} days",
    "warnings_intro": "Warnings that were new on the evaluated nights from {first} to {last}. Shadow rules (on trial) are never mailed; their warnings are counted apart, light and striped.",
    "warnings_none": "No new warnings in this period.",
    "per_rule": "Per rule",
    "per_owner": "Per owner",
    "rule": "Rule",
    "owner": "Owner",
    "new": "new",
    "accounts": "Accounts",
    "shadow_mark": "shadow",
    "shadow_count": "+{n} shadow",
    "ops": "ops (no usable owner address)",
    "gate_title": "Data checks (gate)",
    "gate_intro": "The worst outcome of each night of the last {days} days, and the checks that did not pass.",
    "gate_none": "No checks in this period.",
    "night": "Night",
    "outcome": "Outcome",
    "not_passed": "Not passed",
    "gate_summary": "{clean} of {nights} nights checked passed every check.",
    "gate_problems": "Nights with checks not passed:",
    "no_run": "no run",
    "fail": "stopped",
    "hold": "held",
    "warn": "warning",
    "pass": "passed",
    "skip": "skipped",
    "limit": "limit",
    "backtest_title": "Last backtest",
    "backtest_intro": "Nights {first} to {last}, rules from {rules}, run on {ran_at} (UTC).",
    "backtest_none": "No backtest yet: run",
    "backtest_none_after": "",
    "nights_fired": "Nights fired",
    "accounts_flagged": "Accounts flagged",
    "emails": "Emails per owner per week",
    "precision": "Precision",
    "too_late": "Too late",
    "recall": "Recall",
    "lead": "Median lead (days)",
    "total": "Total (live rules)",
    "mode": "Mode",
    "live": "live",
    "footer": "Written by the loyalty early-warning system from {database}. Definitions: docs/report.md.",
}

# The backtest page (`loyalty backtest --format html`): the template reads these as ``ui.<key>``.
BACKTEST = {
    "title": "Backtest {first} – {last}",
    "heading": "Backtest: {nights} nights, {first} – {last}",
    "meta": "{owners} owners · outcomes known up to {data_end}",
    "rule": "Rule",
    "mode": "Mode",
    "nights_fired": "Nights fired",
    "accounts_flagged": "Accounts flagged",
    "digests": "Digests per owner and week",
    "precision": "Precision",
    "too_late": "Too late",
    "recall": "Recall",
    "lead": "Median lead (days)",
    "total": "All live rules",
    "difference": "{accounts} accounts {warns} warns, {silent} does not ({lost} lost)",
    "account": "Account",
    "first_warned": "First warned",
    "lost_on": "Lost on",
    "lost_how": "How",
    "not_lost": "not lost",
    "meaning": "What the figures mean",
    "precision_means": "Of the flagged accounts whose outcome is known, the share lost within the horizon after their first warning.",
    "too_late_means": "Flagged accounts first warned only after they were lost: counted against precision, never as a hit.",
    "recall_means": "Of the accounts lost in the range, the share warned at least the minimum lead before.",
    "lead_term": "Median lead",
    "lead_means": "Days from the first warning to the loss (the last order of an account that stopped); positive means warned in time.",
    "tune_title": "Tuning {rule}, {first} – {last}",
    "tune_heading": "Tuning {rule}: {nights} nights, {first} – {last}",
    "tune_front": "front",
    "tune_current": "current",
    "tune_front_means": "No other combination is at least as good on precision, recall and digests per owner and week (fewer is better) and better on one: the sensible choices. A combination that warns no account is not marked.",
    "tune_current_means": "The values in the rule file.",
}
