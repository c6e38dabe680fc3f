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

-- The alert producer reads each append-only source by transaction id: every row written by
-- a transaction older than the oldest one still running is final, so a cursor on that
-- boundary never skips a row that committed late. Cursors start now: history is not news.
ALTER TABLE order_events ADD COLUMN txid XID8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE payment_anomalies ADD COLUMN txid XID8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX order_events_by_txid ON order_events (txid);
CREATE INDEX payment_anomalies_by_txid ON payment_anomalies (txid);

CREATE TABLE alert_cursors (
    source    TEXT PRIMARY KEY,
    -- Rows with txid below this were turned into alerts.
    next_txid XID8 NOT NULL
);
INSERT INTO alert_cursors (source, next_txid) VALUES
    ('order_events', pg_snapshot_xmin(pg_current_snapshot())),
    ('payment_anomalies', pg_snapshot_xmin(pg_current_snapshot()));
