"""German: every word a German-speaking reader sees (de_DE formats).

The sections and their keys are the same in every language module (tests/unit/test_i18n.py);
a text with a count maps CLDR plural categories to texts, see the package's docstring.
"""

LOCALE = "de_DE"

# The digest: templates read these as ``ui.<key>``.
DIGEST = {
    "subject": "Frühwarnung {night}: {summary}",
    "new": {"one": "1 neues Warnsignal", "other": "{count} neue Warnsignale"},
    "at": {"one": " bei einem Kunden", "other": " bei {count} Kunden"},
    "open": {"one": "1 weiterhin offen", "other": "{count} weiterhin offen"},
    "resolved": {"one": "1 behoben", "other": "{count} behoben"},
    "heading": "Frühwarnung vom {night}",
    "greeting": "Hallo {name},",
    "portfolio": "Ihr Portfolio: {watched} Kunden beobachtet, {warned} mit offenen Warnsignalen. Kundenbindungsrate der letzten 12 Monate: {retention}.",
    "ops_intro": "Diese Warnsignale konnten keinem Betreuer zugestellt werden. Bitte weiterleiten und die Betreuer-Adresse im ERP korrigieren.",
    "section_new": "Neue Warnsignale",
    "section_more": "Weitere Kunden mit neuen Warnsignalen",
    "section_open": "Weiterhin offen",
    "section_resolved": "Behoben",
    "since": "seit {date}",
    "account_id": "Kundennummer",
    "segment": "Segment",
    "group": "Gruppe",
    "revenue": "Umsatz der letzten 12 Monate: {amount}",
    "months": "{first} – {night}",
    "evidence": "Befund",
    "action": "Empfehlung",
    "routed": "Weitergeleitet: {reason}",
    "attachment": "Die vollständige Liste hängt als CSV-Datei an.",
    "intro": "Ihre erste Frühwarnung: hier die wichtigsten offenen Warnsignale Ihrer Kunden. Ab morgen erfahren Sie nur noch, was neu ist.",
    "intro_more": {"one": "1 weiteres offenes Warnsignal steht in der angehängten CSV-Datei.", "other": "{count} weitere offene Warnsignale stehen in der angehängten CSV-Datei."},
    "waiting": {"one": "1 weiteres neues Warnsignal folgt in einer der nächsten Frühwarnungen (in der angehängten CSV-Datei aufgeführt).", "other": "{count} weitere neue Warnsignale folgen in den nächsten Frühwarnungen (in der angehängten CSV-Datei aufgeführt)."},
    "attachment_name": "fruehwarnung-{night}.csv",
    "footer": (
        "Diese Nachricht wurde automatisch vom Loyalty-Frühwarnsystem erstellt "
        "und berücksichtigt Daten bis einschließlich {night}."
    ),
    "unknown": "unbekannt",
    "critical": "kritisch",
    "high": "hoch",
    "medium": "mittel",
    "low": "niedrig",
    "info": "Hinweis",
    "apostle": "Apostel",
    "loyal": "Loyal",
    "opportunist": "Opportunist",
    "hostage": "Geisel",
    "defector": "Abwanderer",
    "terrorist": "Terrorist",
}

# Why a warning went to ops instead of its owner (lifecycle.routing.RouteReason); {value} is the
# owner address or name as the extract wrote it.
ROUTE_REASONS = {
    "no_owner_address": "Kunde hat keine Betreuer-Adresse",
    "owner_address_invalid": "Betreuer-Adresse '{value}' ist ungültig",
    "owner_name_invalid": "Betreuer-Name '{value}' ist ungültig",
    "account_missing": "Kunde fehlt in den Kundendaten dieser Nacht",
}

# The mail to ops when a night stops at the gate or its digests are held.
NOTICES = {
    "failed_subject": "Frühwarnung {night}: Nacht angehalten, keine Digests versandt ({first})",
    "held_subject": "Frühwarnung {night}: Digests zurückgehalten, {first}",
    "failed_intro": (
        "Die Extrakte für den {night} haben die Prüfung nicht bestanden. Die Nacht wurde nicht "
        "ausgewertet, nichts wurde ersetzt, kein Betreuer hat eine E-Mail bekommen."
    ),
    "held_intro": (
        "Die Nacht {night} ist ausgewertet, aber sie würde ungewöhnlich viele Kunden neu warnen. "
        "Die Digests an die Betreuer sind zurückgehalten, bis jemand draufgeschaut hat."
    ),
    "failed_todo": (
        "Was tun: den Export prüfen oder neu liefern, dann `loyalty run --date {iso}`. "
        "`loyalty gate --date {iso}` zeigt die Prüfungen erneut."
    ),
    "held_todo": (
        "Was tun: die Warnungen ansehen (`loyalty alerts --date {iso}`). Stimmen sie, gibt "
        "`loyalty release --date {iso}` die Digests frei. Sind die Daten falsch: Export neu liefern, "
        "dann `loyalty run --date {iso}`."
    ),
    "problems": "Was nicht stimmt:",
    "all_checks": "Alle Prüfungen:",
}

# The portfolio report (`loyalty report`): the template reads these as ``ui.<key>``.
REPORT = {
    "title": "Portfolio-Bericht",
    "subtitle": "Daten bis {date}",
    "warnings_as_of": "Warnsignale: Stand der Nacht vom {date}",
    "kpi_active": "Aktive Kunden",
    "kpi_firing": "mit aktivem Warnsignal",
    "kpi_retention": "Kundenbindung, 12 Monate",
    "kpi_new": "Neue Warnsignale, {days} Tage",
    "kpi_gate": "Letzte Prüfung der Daten",
    "of_active": "{share} der aktiven",
    "retention_counts": "{end} Kunden am Ende, {won} neu gewonnen, {start} am Anfang",
    "history_short": "Bestelldaten erst ab {date}: zu kurz",
    "new_in_nights": "in {nights} ausgewerteten Nächten",
    "groups_title": "Kundengruppen",
    "groups_intro": "Jeder Punkt ein aktiver Kunde: Zufriedenheit (letzte NPS-Bewertung der letzten 2 Jahre) gegen Bestellhäufigkeit (Bestellungen der letzten 365 Tage, logarithmische Skala). Farbe: Warnsignal am {date}.",
    "axis_orders": "Bestellungen in den letzten 365 Tagen (log. Skala)",
    "axis_nps": "NPS",
    "frequent": "häufig: ≥ {n}",
    "no_survey": "Ohne Umfrage in den letzten 2 Jahren: {n} Kunden",
    "firing": "Warnsignal aktiv",
    "pending": "Warnsignal in Vorlauf",
    "shadow": "nur Probe-Regel (Schattenmodus)",
    "none": "kein Warnsignal",
    "apostle": "Apostel",
    "loyal": "Loyale",
    "opportunist": "Opportunisten",
    "hostage": "Geiseln",
    "defector": "Abwanderer",
    "terrorist": "Terroristen",
    "group_note": "Linien wie in rules/groups.py: häufig ab {frequent} Bestellungen im Jahr, zufrieden ab NPS 7, Apostel ab NPS 9, Terroristen bis NPS 3 (oder ab {angry} Beschwerden im Jahr). Ohne Umfrage entscheidet die Zahl der Beschwerden über die Gruppe.",
    "point": "{name} ({id}) · {orders} Bestellungen · NPS {nps} · {group} · {state}",
    "point_no_survey": "{name} ({id}) · {orders} Bestellungen · ohne Umfrage · {group} · {state}",
    "retention_title": "Kundenbindungsrate pro Monat",
    "retention_intro": "(Kunden am Monatsende − im Monat gewonnene) / Kunden am Monatsanfang. Kunde ist, wer in den 365 Tagen bis zum Stichtag bestellt hat; gewonnen, wer im Monat zum ersten Mal bestellt hat.",
    "retention_row": "%",
    "retention_partial": "Der letzte Monat reicht bis {date}.",
    "retention_short": "Für {n} Monate reichen die Bestelldaten nicht weit genug zurück (ab {date}).",
    "retention_month": "{month}: {rate} · {start} Kunden am Anfang, {won} gewonnen, {end} am Ende",
    "retention_none": "Keine Bestellungen in diesem Zeitraum.",
    "warnings_title": "Neue Warnsignale der letzten {days} Tage",
    "warnings_intro": "Warnsignale, die in den ausgewerteten Nächten vom {first} bis {last} neu gemeldet wurden. Probe-Regeln (Schattenmodus) werden nicht versandt; ihre Warnsignale sind hell gestreift gezählt.",
    "warnings_none": "Keine neuen Warnsignale in diesem Zeitraum.",
    "per_rule": "Pro Regel",
    "per_owner": "Pro Betreuer",
    "rule": "Regel",
    "owner": "Betreuer",
    "new": "neu",
    "accounts": "Kunden",
    "shadow_mark": "Probe",
    "shadow_count": "+{n} Probe",
    "ops": "Ops (keine gültige Betreuer-Adresse)",
    "gate_title": "Prüfung der Daten (Gate)",
    "gate_intro": "Das schlechteste Ergebnis jeder Nacht der letzten {days} Tage und die Prüfungen, die nicht bestanden wurden.",
    "gate_none": "Keine Prüfungen in diesem Zeitraum.",
    "night": "Nacht",
    "outcome": "Ergebnis",
    "not_passed": "Nicht bestanden",
    "gate_summary": "{clean} von {nights} Nächten mit Prüfung haben alle Prüfungen bestanden.",
    "gate_problems": "Nächte mit nicht bestandenen Prüfungen:",
    "no_run": "kein Lauf",
    "fail": "gestoppt",
    "hold": "angehalten",
    "warn": "Hinweis",
    "pass": "bestanden",
    "skip": "übersprungen",
    "limit": "Grenze",
    "backtest_title": "Letzter Backtest",
    "backtest_intro": "Nächte {first} bis {last}, Regeln aus {rules}, gerechnet am {ran_at} (UTC).",
    "backtest_none": "Noch kein Backtest:",
    "backtest_none_after": "ausführen.",
    "nights_fired": "Nächte mit Meldung",
    "accounts_flagged": "Kunden gemeldet",
    "emails": "E-Mails je Betreuer und Woche",
    "precision": "Präzision",
    "too_late": "Zu spät",
    "recall": "Trefferquote",
    "lead": "Vorlauf (Median, Tage)",
    "total": "Gesamt (aktive Regeln)",
    "mode": "Modus",
    "live": "aktiv",
    "footer": "Erstellt vom Loyalty-Frühwarnsystem aus {database}. Definitionen: docs/report.md.",
}

# The backtest page (`loyalty backtest --format html`): the template reads these as ``ui.<key>``.
BACKTEST = {
    "title": "Backtest {first} – {last}",
    "heading": "Backtest: {nights} Nächte, {first} – {last}",
    "meta": "{owners} Betreuer · Ausgang bekannt bis {data_end}",
    "rule": "Regel",
    "mode": "Modus",
    "nights_fired": "Nächte mit Meldung",
    "accounts_flagged": "Kunden gemeldet",
    "digests": "Digests je Betreuer und Woche",
    "precision": "Präzision",
    "too_late": "Zu spät",
    "recall": "Trefferquote",
    "lead": "Vorlauf (Median, Tage)",
    "total": "Alle aktiven Regeln",
    "difference": "{warns} warnt {accounts} Kunden, {silent} nicht ({lost} verloren)",
    "account": "Kunde",
    "first_warned": "Erste Warnung",
    "lost_on": "Verloren am",
    "lost_how": "Wie",
    "not_lost": "nicht verloren",
    "meaning": "Was die Zahlen bedeuten",
    "precision_means": "Von den gemeldeten Kunden, deren Ausgang bekannt ist, der Anteil, der innerhalb des Horizonts nach der ersten Warnung verloren ging.",
    "too_late_means": "Gemeldete Kunden, die erst nach ihrem Verlust gewarnt wurden: zählen gegen die Präzision, nie als Treffer.",
    "recall_means": "Von den im Zeitraum verlorenen Kunden der Anteil, der mindestens um den Mindestvorlauf vorher gewarnt wurde.",
    "lead_term": "Vorlauf (Median)",
    "lead_means": "Tage von der ersten Warnung bis zum Verlust (der letzten Bestellung eines Kunden, der aufgehört hat); positiv heißt: rechtzeitig gewarnt.",
    "tune_title": "Feinabstimmung {rule}, {first} – {last}",
    "tune_heading": "Feinabstimmung {rule}: {nights} Nächte, {first} – {last}",
    "tune_front": "Pareto-Front",
    "tune_current": "aktuell",
    "tune_front_means": "Keine andere Kombination ist bei Präzision, Trefferquote und Digests je Betreuer und Woche (weniger ist besser) überall mindestens so gut und bei einer Zahl besser: die sinnvollen Wahlen. Eine Kombination, die keinen Kunden meldet, wird nicht markiert.",
    "tune_current_means": "Die Werte in der Regeldatei.",
}
