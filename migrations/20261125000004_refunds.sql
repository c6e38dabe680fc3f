-- Money back. One refund per order, for the whole amount, under a deterministic
-- out_refund_no, so that a retried refund can never refund twice.
CREATE TABLE refunds (
    id             BIGSERIAL PRIMARY KEY,
    order_number   TEXT NOT NULL UNIQUE REFERENCES orders (order_number),
    out_refund_no  TEXT NOT NULL UNIQUE,
    amount_fen     BIGINT NOT NULL CHECK (amount_fen > 0),
    reason         TEXT NOT NULL,
    requested_by   TEXT NOT NULL,
    -- requested: to be sent to WeChat; accepted: WeChat took it, outcome pending;
    -- success: money returned (confirmed by queryrefund); failed: WeChat closed it or it
    -- needs a person (REFUNDCLOSE, CHANGE).
    status         TEXT NOT NULL DEFAULT 'requested'
                   CHECK (status IN ('requested', 'accepted', 'success', 'failed')),
    refund_id      TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    next_check_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at   TIMESTAMPTZ
);
CREATE INDEX refunds_open ON refunds (next_check_at) WHERE status IN ('requested', 'accepted');

-- Automatic refunds apply to top-ups that fail from now on: orders that failed before this
-- system refunded anything may have been refunded by hand already.
CREATE TABLE app_settings (
    name TEXT PRIMARY KEY,
    at   TIMESTAMPTZ NOT NULL
);
INSERT INTO app_settings (name, at) VALUES ('auto_refunds_since', now());
