-- PostgreSQL dialect of migrations/0002_stripe_billing.sql.
CREATE TABLE billing_state (
    stripe_customer_id    TEXT PRIMARY KEY,
    status                TEXT CHECK (status IN ('active', 'inactive', 'cancelled')),
    version_created       BIGINT,
    version_rank          INTEGER,
    version_event_id      TEXT,
    period_end            TEXT,
    subscription_id       TEXT,
    subscription_created  BIGINT,
    subscription_rank     INTEGER,
    subscription_event_id TEXT,
    payment_failures      INTEGER NOT NULL DEFAULT 0,
    updated_at            TEXT NOT NULL
);

ALTER TABLE webhook_events ADD COLUMN outcome TEXT;

CREATE INDEX idx_refunds_charge ON refund_requests (stripe_charge_id);
