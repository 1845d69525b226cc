"""CPU steal: the share of the machine's time a hypervisor gave to someone else.

On shared machines, steal bursts stretch every latency; runs taken during
them are set aside (benchmarks) or judged inconclusive (the gate).
"""

from __future__ import annotations

from pathlib import Path


def cpu_times() -> tuple[int, int] | None:
    """(total, steal) jiffies since boot from /proc/stat, or None where there is none."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [int(v) for v in fields]
    return sum(values), values[7] if len(values) > 7 else 0


def steal_pct(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Steal between two readings, in percent of all CPU time; None if unknown."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return round(100 * (after[1] - before[1]) / (after[0] - before[0]), 2)
