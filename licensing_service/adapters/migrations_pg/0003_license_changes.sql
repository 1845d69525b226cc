-- PostgreSQL dialect of migrations/0003_license_changes.sql, plus what makes
-- the feed the replicas' cache invalidation (pg_store.py reads it):
--
-- 1. Every change to a customer row other than its validation stamps is fed,
--    by a trigger, whoever makes it (a replica, an operator's UPDATE): each
--    replica's customer view (fresh rows, last-known-good records) drops that
--    license.
-- 2. The feed is appended in commit order. A sequence alone is not: a
--    transaction holding seq 10 may commit after one holding seq 11, and a
--    reader that already moved its cursor past 11 would never see 10. So an
--    insert first takes the transaction-level advisory lock LICENSE_FEED
--    (held to commit) and only then draws its seq: commits to the feed are
--    serialised, and seq order is commit order. License changes are rare
--    (webhooks, machine switches), validations never write here.
CREATE TABLE license_changes (
    seq         BIGINT PRIMARY KEY,
    email       TEXT NOT NULL,
    changed_at  TEXT NOT NULL
);
CREATE SEQUENCE license_changes_seq OWNED BY license_changes.seq;

-- 7_300_001: the advisory lock key LICENSE_FEED (pg_store.LICENSE_FEED_LOCK).
CREATE FUNCTION license_changes_in_commit_order() RETURNS trigger AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7300001);
    NEW.seq := nextval('license_changes_seq');
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER license_changes_in_commit_order BEFORE INSERT ON license_changes
    FOR EACH ROW EXECUTE FUNCTION license_changes_in_commit_order();

CREATE FUNCTION customers_feed_change() RETURNS trigger AS $$
BEGIN
    -- seq is drawn by the BEFORE trigger (NOT NULL is checked after it).
    INSERT INTO license_changes (email, changed_at) VALUES (OLD.email, NEW.updated_at);
    IF NEW.email IS DISTINCT FROM OLD.email THEN
        INSERT INTO license_changes (email, changed_at) VALUES (NEW.email, NEW.updated_at);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

-- Validation stamps (last_validation, last_seen) are the only columns left out:
-- they change on every validation and no cache decision depends on another
-- replica's stamp (see service/customer_view.py, pending validation stamps).
CREATE TRIGGER customers_feed_change AFTER UPDATE ON customers FOR EACH ROW
    WHEN ((OLD.email, OLD.name, OLD.unlock_token, OLD.stripe_customer_id,
           OLD.stripe_session_id, OLD.machine_fingerprint, OLD.subscription_status,
           OLD.subscription_id, OLD.next_billing_date, OLD.current_period_start,
           OLD.current_period_end, OLD.payment_failures)
          IS DISTINCT FROM
          (NEW.email, NEW.name, NEW.unlock_token, NEW.stripe_customer_id,
           NEW.stripe_session_id, NEW.machine_fingerprint, NEW.subscription_status,
           NEW.subscription_id, NEW.next_billing_date, NEW.current_period_start,
           NEW.current_period_end, NEW.payment_failures))
    EXECUTE FUNCTION customers_feed_change();
