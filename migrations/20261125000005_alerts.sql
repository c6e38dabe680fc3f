-- Alerts for a person, derived from what the money path already records (order events,
-- anomalies) and from health checks, then delivered by their own dispatcher: an alert
-- channel that is down never slows a payment or a top-up.
CREATE TABLE alerts (
    id              BIGSERIAL PRIMARY KEY,
    kind            TEXT NOT NULL,
    -- One alert per kind and subject (an order, an anomaly, an hour of backlog).
    dedupe_key      TEXT NOT NULL UNIQUE,
    order_number    TEXT,
    message         TEXT NOT NULL,
    occurrences     INTEGER NOT NULL DEFAULT 1,
    -- pending → sent, per channel; 'off' when the channel is not configured.
    wecom_status    TEXT NOT NULL DEFAULT 'pending',
    email_status    TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Last time any channel took it (the rate limit counts these); sent_at: all channels.
    delivered_at    TIMESTAMPTZ,
    sent_at         TIMESTAMPTZ
);
CREATE INDEX alerts_undelivered ON alerts (next_attempt_at)
    WHERE wecom_status = 'pending' OR email_status = 'pending';

-- How far the alert producer has read each append-only source.
CREATE TABLE alert_cursors (
    source  TEXT PRIMARY KEY,
    last_id BIGINT NOT NULL
);
INSERT INTO alert_cursors (source, last_id) VALUES ('order_events', 0), ('payment_anomalies', 0);
