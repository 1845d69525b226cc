-- The seven tables of the POSPal seeds, with the columns the code really
-- writes (the seed schema and its worker disagreed) and the indexes of the
-- hot paths. Timestamps are UTC text 'YYYY-MM-DD HH:MM:SS.ffffff', which
-- sorts correctly and compares with SQLite's datetime(); they are always
-- bound from the injected clock, never from datetime('now').

CREATE TABLE customers (
    id                    INTEGER PRIMARY KEY,
    email                 TEXT NOT NULL UNIQUE,
    name                  TEXT,
    unlock_token          TEXT NOT NULL UNIQUE,
    stripe_customer_id    TEXT,
    stripe_session_id     TEXT,
    machine_fingerprint   TEXT,          -- SHA-256 hex, never the raw value
    subscription_status   TEXT NOT NULL DEFAULT 'active'
                          CHECK (subscription_status IN ('active', 'inactive', 'cancelled')),
    subscription_id       TEXT,
    next_billing_date     TEXT,
    current_period_start  TEXT,
    current_period_end    TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    last_seen             TEXT,
    last_validation       TEXT,
    payment_failures      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_customers_stripe_customer ON customers (stripe_customer_id);
CREATE INDEX idx_customers_subscription ON customers (subscription_id);
CREATE INDEX idx_customers_stripe_session ON customers (stripe_session_id);
CREATE INDEX idx_customers_status ON customers (subscription_status);

CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY,
    customer_id     INTEGER,
    action          TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    request_id      TEXT,
    client_address  TEXT,
    details         TEXT,                -- JSON; never tokens or raw fingerprints
    created_at      TEXT NOT NULL
);
-- Only the time index: every validation inserts a row, and an index on
-- customer_id costs each insert a random B-tree page (measured 17.6 us a row
-- with it, 6.9 us without). Per-customer questions are support work: bound
-- them by time, e.g. WHERE created_at > ? AND customer_id = ?.
CREATE INDEX idx_audit_created ON audit_log (created_at);

CREATE TABLE email_log (
    id               INTEGER PRIMARY KEY,
    customer_id      INTEGER,
    email_type       TEXT NOT NULL
                     CHECK (email_type IN ('welcome', 'payment_failed', 'suspension',
                                           'reactivation', 'machine_switch')),
    recipient        TEXT NOT NULL,
    payload          TEXT NOT NULL,       -- JSON template parameters
    delivery_status  TEXT NOT NULL DEFAULT 'pending'
                     CHECK (delivery_status IN ('pending', 'delivered', 'failed', 'bounced')),
    resend_id        TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    last_error       TEXT,
    dedupe_key       TEXT UNIQUE,         -- one email per cause, however often the cause repeats
    created_at       TEXT NOT NULL,
    delivered_at     TEXT
);
CREATE INDEX idx_email_due ON email_log (delivery_status, next_attempt_at);
CREATE INDEX idx_email_customer ON email_log (customer_id);

CREATE TABLE active_sessions (
    id                   INTEGER PRIMARY KEY,
    session_id           TEXT NOT NULL UNIQUE,
    customer_id          INTEGER NOT NULL REFERENCES customers (id),
    status               TEXT NOT NULL
                         CHECK (status IN ('active', 'ended', 'kicked', 'expired')),
    device_info          TEXT,            -- JSON
    machine_fingerprint  TEXT,            -- SHA-256 hex
    client_address       TEXT,
    started_at           TEXT NOT NULL,
    last_heartbeat       TEXT NOT NULL,
    ended_at             TEXT
);
-- The one-device rule as a constraint: at most one row per license may be
-- marked active, whatever the code above it does.
CREATE UNIQUE INDEX uq_sessions_one_active ON active_sessions (customer_id) WHERE status = 'active';
CREATE INDEX idx_sessions_customer_status ON active_sessions (customer_id, status);
CREATE INDEX idx_sessions_heartbeat ON active_sessions (status, last_heartbeat);

CREATE TABLE refund_requests (
    id                INTEGER PRIMARY KEY,
    customer_id       INTEGER REFERENCES customers (id),
    stripe_charge_id  TEXT,
    stripe_refund_id  TEXT UNIQUE,
    amount_cents      INTEGER NOT NULL,
    currency          TEXT NOT NULL DEFAULT 'eur',
    reason            TEXT,
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'approved', 'rejected', 'processed')),
    created_at        TEXT NOT NULL,
    processed_at      TEXT
);
CREATE INDEX idx_refunds_customer ON refund_requests (customer_id);

CREATE TABLE webhook_events (
    id                 INTEGER PRIMARY KEY,
    stripe_event_id    TEXT NOT NULL UNIQUE,
    event_type         TEXT NOT NULL,
    processing_status  TEXT NOT NULL
                       CHECK (processing_status IN ('processing', 'completed', 'failed')),
    customer_id        INTEGER,
    error_message      TEXT,
    retry_count        INTEGER NOT NULL DEFAULT 0,
    event_created      TEXT,
    received_at        TEXT NOT NULL,
    processed_at       TEXT,
    lease_until        TEXT
);
CREATE INDEX idx_webhook_status ON webhook_events (processing_status);
CREATE INDEX idx_webhook_customer ON webhook_events (customer_id);
CREATE INDEX idx_webhook_type ON webhook_events (event_type);
