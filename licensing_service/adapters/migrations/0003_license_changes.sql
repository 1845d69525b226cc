-- A feed of license status changes, so every worker process can drop what it
-- holds about a changed license from its breaker snapshot when it notices
-- another process's commit (PRAGMA data_version). Without it, a worker that
-- validated a license before another worker suspended it could answer
-- "active" from its snapshot during an outage: a grace period.
CREATE TABLE license_changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    email       TEXT NOT NULL,
    changed_at  TEXT NOT NULL
);
