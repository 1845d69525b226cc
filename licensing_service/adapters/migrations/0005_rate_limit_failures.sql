-- Failed credential attempts shared by every replica on this database, so a
-- brute force spread over several replicas meets one limit (not one per
-- replica). Each process keeps its own sliding windows in memory and reads
-- this feed (seq > its cursor) every audit flush; rows older than the window
-- are pruned. ``replica`` names the process that wrote a row, which counted it
-- already and skips it when it reads the feed.
CREATE TABLE rate_limit_failures (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    scope       TEXT NOT NULL CHECK (scope IN ('email', 'ip')),
    key         TEXT NOT NULL,
    failed_at   TEXT NOT NULL,
    replica     TEXT NOT NULL
);
CREATE INDEX ix_rate_limit_failures_failed_at ON rate_limit_failures (failed_at);
