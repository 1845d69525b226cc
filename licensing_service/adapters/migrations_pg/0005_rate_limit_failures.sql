-- PostgreSQL dialect of migrations/0005_rate_limit_failures.sql: failed
-- credential attempts shared by every replica (service/shared_failures.py).
-- Read as a feed (seq > cursor), so seq order must be commit order, as for
-- license_changes (0003): the insert trigger first takes the transaction-level
-- advisory lock FAILURE_FEED (key 7_300_002, held to commit), then draws its
-- seq. Only failed attempts write here, in one batch per replica per flush.
CREATE TABLE rate_limit_failures (
    seq         BIGINT PRIMARY KEY,
    scope       TEXT NOT NULL CHECK (scope IN ('email', 'ip')),
    key         TEXT NOT NULL,
    failed_at   TEXT NOT NULL,
    replica     TEXT NOT NULL
);
CREATE SEQUENCE rate_limit_failures_seq OWNED BY rate_limit_failures.seq;
CREATE INDEX ix_rate_limit_failures_failed_at ON rate_limit_failures (failed_at);

CREATE FUNCTION rate_limit_failures_in_commit_order() RETURNS trigger AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7300002);
    NEW.seq := nextval('rate_limit_failures_seq');
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER rate_limit_failures_in_commit_order BEFORE INSERT ON rate_limit_failures
    FOR EACH ROW EXECUTE FUNCTION rate_limit_failures_in_commit_order();
