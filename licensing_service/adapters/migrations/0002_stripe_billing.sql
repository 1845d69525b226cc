-- Stripe webhooks: the order-proof billing state of each Stripe customer,
-- and what happened to each event.

-- One row per Stripe customer: the merge of every event seen for it (see
-- domain/billing.py). Exists before the license does when a subscription
-- or invoice event overtakes its checkout.
CREATE TABLE billing_state (
    stripe_customer_id    TEXT PRIMARY KEY,
    status                TEXT CHECK (status IN ('active', 'inactive', 'cancelled')),
    version_created       INTEGER,
    version_rank          INTEGER,
    version_event_id      TEXT,
    period_end            TEXT,
    subscription_id       TEXT,
    subscription_created  INTEGER,
    subscription_rank     INTEGER,
    subscription_event_id TEXT,
    payment_failures      INTEGER NOT NULL DEFAULT 0,
    updated_at            TEXT NOT NULL
);

-- applied | stale | recorded | ignored | unhandled: what processing did.
ALTER TABLE webhook_events ADD COLUMN outcome TEXT;

CREATE INDEX idx_refunds_charge ON refund_requests (stripe_charge_id);
