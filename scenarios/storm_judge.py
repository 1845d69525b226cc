"""The storm's judges: lost events, events applied twice, audit rows and emails
lost or doubled. Pure: they read the answers the sender recorded, the oracle,
and (when there is one) what the database holds; nothing here does I/O.

What "applied" means is the gate's (``loadtests.harness.checks.
webhook_idempotency``): a 2xx answer without ``idempotent: true``. Its
``applied_problems`` and ``email_count_mismatches`` are used as they are.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fixtures.stripe.lifecycle import ExpectedLicense
from fixtures.stripe.sender import Attempt
from loadtests.harness.checks.webhook_idempotency import (
    applied_problems,
    email_count_mismatches,
)
from scenarios.storm_db import Stored


@dataclass(slots=True)
class Findings:
    """Each list holds one line per problem; all empty is a pass."""

    lost: list[str] = field(default_factory=list)
    applied_twice: list[str] = field(default_factory=list)
    audit: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    acknowledged: int = 0  # events answered 2xx at least once
    # Events whose processing answer never arrived (a kill between commit and
    # answer) and whose retry was answered duplicate: the database has them.
    answer_lost_after_commit: int = 0

    def all(self) -> list[str]:
        return [*self.lost, *self.applied_twice, *self.audit, *self.emails]


def judge(
    attempts: Sequence[Attempt],
    events: Sequence[dict[str, Any]],
    oracle: Mapping[str, ExpectedLicense],
    stored: Stored | None,
) -> Findings:
    found = Findings()
    ids = [str(e["id"]) for e in events]
    acked = {a.event_id for a in attempts if 200 <= a.status < 300 and a.forgery is None}
    found.acknowledged = sum(1 for eid in ids if eid in acked)
    twice, never = applied_problems(attempts, events)
    found.applied_twice += [f"{eid}: answered as processed {n} times" for eid, n in twice]
    found.lost += [
        f"{eid}: never acknowledged 2xx (given up, or the storm ended)"
        for eid in ids
        if eid not in acked
    ]
    if stored is None:
        # Without the database, an event whose every 2xx said "duplicate" cannot
        # be told from one whose first processing was never committed.
        found.lost += [
            f"{eid}: answered duplicate, never processed" for eid in never if eid in acked
        ]
        return found
    found.lost += [
        f"{eid}: acknowledged 2xx but not completed in webhook_events"
        for eid in ids
        if eid in acked and eid not in stored.completed
    ]
    found.answer_lost_after_commit = sum(
        1 for eid in never if eid in acked and eid in stored.completed
    )
    found.audit += audit_problems(stored, oracle)
    found.applied_twice += [
        f"{eid}: {n} status_change audit rows" for eid, n in _doubled_status_events(stored)
    ]
    found.emails += email_problems(stored.outbox, oracle)
    return found


def _doubled_status_events(stored: Stored) -> list[tuple[str, int]]:
    counts = Counter(r.event_id for r in stored.audit if r.action == "status_change")
    return [(eid, n) for eid, n in counts.items() if eid is not None and n > 1]


def audit_problems(stored: Stored, oracle: Mapping[str, ExpectedLicense]) -> list[str]:
    """Each license created once, with one ``license_created`` row; every
    ``status_change`` row from a completed event; and each license's trail of
    status changes consistent: every row a change from the one before (a lost
    or doubled row shows as two equal neighbours) ending at the license's status."""
    problems = []
    by_customer: dict[int, list[str]] = defaultdict(list)
    created: Counter[int] = Counter()
    for row in stored.audit:
        if row.customer_id is None:
            continue
        if row.action == "license_created":
            created[row.customer_id] += 1
        elif row.action == "status_change":
            by_customer[row.customer_id].append(row.outcome)
            if row.event_id is None or row.event_id not in stored.completed:
                problems.append(
                    f"audit row {row.id}: a status change from event {row.event_id},"
                    " which is not completed in webhook_events"
                )
    for email in oracle:
        lic = stored.licenses.get(email)
        if lic is None:
            problems.append(f"{email}: no license in the database")
            continue
        if created[lic.id] != 1:
            problems.append(f"{email}: {created[lic.id]} license_created audit rows, expected 1")
        trail = by_customer.get(lic.id, [])
        repeats = [i for i in range(1, len(trail)) if trail[i] == trail[i - 1]]
        if repeats:
            problems.append(
                f"{email}: status_change trail {trail} repeats {trail[repeats[0]]!r}"
                " (a row lost between, or one doubled)"
            )
        if trail and trail[-1] != lic.status:
            problems.append(
                f"{email}: last status_change says {trail[-1]!r}, the license is {lic.status!r}"
            )
    return problems


def email_problems(
    outbox: Sequence[Mapping[str, Any]], oracle: Mapping[str, ExpectedLicense]
) -> list[str]:
    """Every email the oracle expects queued exactly once, by type and by cause."""
    diffs, seen, expected = email_count_mismatches(outbox, oracle)
    problems = [
        f"{kind} to {recipient}: {seen[(recipient, kind)]} in the outbox,"
        f" expected {expected[(recipient, kind)]}"
        for recipient, kind in diffs
    ]
    keys = Counter(str(row.get("dedupe_key")) for row in outbox)
    for email, exp in oracle.items():
        for kind, key in exp.emails:
            if keys[key] != 1:
                problems.append(f"{kind} to {email} ({key}): {keys[key]} rows, expected 1")
    return problems
