"""Outage rehearsals: declarative files (``scenarios/rehearsals/*.toml``), the runner
that carries them out against the reference service or a target, and the
expectations that judge what was recorded. ``licensing-harness rehearse``."""
