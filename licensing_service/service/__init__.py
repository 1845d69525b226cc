"""Use cases: the pure core composed with storage, clock and outbox ports."""
