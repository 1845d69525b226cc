"""Splitting a run's inputs between Locust workers, so no two workers drive the same thing.

Every license goes to exactly one worker (a session device on one worker and another
on a second worker must not fight over a license the single-process run gives each its
own), and every event of the webhook storm, with all its duplicates and forgeries, to
exactly one worker (a worker can only judge "this event was acknowledged before, so it
must be answered idempotent" for the deliveries it sent itself). Pure: text in, text out.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence


def split_lines(lines: Sequence[str], shares: int) -> list[list[str]]:
    """Non-blank ``lines`` dealt round-robin into ``shares`` lists, order kept within each.

    Dealt, not cut in blocks: the workloads split their licenses by position (the first
    70% validate, the rest hold sessions), and dealing keeps that mix in every share.
    """
    if shares < 1:
        raise ValueError(f"shares must be at least 1, not {shares}")
    kept = [line for line in lines if line.strip()]
    return [kept[i::shares] for i in range(shares)]


def split_stream(lines: Sequence[str], shares: int) -> list[list[str]]:
    """A ``stripe generate`` stream's lines in ``shares`` streams, each with the meta line,
    each event's deliveries all in one share (chosen by a stable hash of the event id)."""
    if shares < 1:
        raise ValueError(f"shares must be at least 1, not {shares}")
    meta: list[str] = []
    out: list[list[str]] = [[] for _ in range(shares)]
    for line in lines:
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("kind") != "delivery":
            meta.append(line)
            continue
        event_id = str(record["event"]["id"])
        out[zlib.crc32(event_id.encode()) % shares].append(line)
    return [[*meta, *share] for share in out]
