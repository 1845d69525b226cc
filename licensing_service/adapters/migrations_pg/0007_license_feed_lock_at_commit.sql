-- PostgreSQL only: the feed's commit-order lock (LICENSE_FEED, 0003) is taken at
-- COMMIT instead of in the middle of a transaction.
--
-- 0003 took it in a BEFORE INSERT trigger, so a transaction held it while it
-- could still go on to wait for other advisory locks. A webhook batch (one
-- transaction, an event per savepoint) whose first event suspends a license
-- holds LICENSE_FEED, then waits for the per-Stripe-customer lock of its next
-- event; another replica's batch holds that lock and waits for LICENSE_FEED to
-- note its own change: a deadlock, which PostgreSQL breaks by failing one of
-- them (a 503, retried by Stripe). Found by the gate over two replicas and the
-- 10,000-event storm over three.
--
-- Now an insert into the feed draws a provisional, negative seq (never read:
-- readers ask for seq > cursor >= 0, and no transaction commits one), and a
-- deferred constraint trigger, run at COMMIT after every statement of the
-- transaction, takes LICENSE_FEED and draws the real seq. A transaction that
-- holds LICENSE_FEED waits for nothing else but its own commit, so no cycle
-- can pass through it, and seq order is still commit order. Rows of a
-- rolled-back savepoint take their queued trigger events with them.
CREATE SEQUENCE license_changes_provisional;

CREATE OR REPLACE FUNCTION license_changes_in_commit_order() RETURNS trigger AS $$
BEGIN
    NEW.seq := -nextval('license_changes_provisional');
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

-- 7_300_001: the advisory lock key LICENSE_FEED (pg_store.LICENSE_FEED_LOCK).
CREATE FUNCTION license_changes_seq_at_commit() RETURNS trigger AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7300001);
    UPDATE license_changes SET seq = nextval('license_changes_seq') WHERE seq = NEW.seq;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER license_changes_seq_at_commit AFTER INSERT ON license_changes
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION license_changes_seq_at_commit();
