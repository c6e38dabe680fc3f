-- Daily reconciliation with WeChat Pay's trade bill. One row per China day: the bill as
-- WeChat served it, the totals on both sides, and where the day stands. Every line that
-- does not agree with our books is a difference with an owner: the reconciliation itself
-- when it could settle it (a payment whose callback was lost, confirmed by queryorder and
-- recorded), otherwise a person, who resolves it with a note.
CREATE TABLE reconciliation_days (
    bill_date        DATE PRIMARY KEY,
    -- waiting: the bill is not generated yet; failed: it could not be fetched;
    -- unbalanced: the bill does not add up in itself (malformed lines, totals that differ
    -- from its lines): fetched again later; differences: the bill balances, some lines
    -- differ from our books; balanced: every line matched, both sides' totals agree.
    status           TEXT NOT NULL
                     CHECK (status IN ('waiting', 'failed', 'unbalanced', 'differences', 'balanced')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    -- NULL once nothing more can change without a person.
    next_attempt_at  TIMESTAMPTZ,
    bill_text        TEXT,
    bill_lines       INTEGER NOT NULL DEFAULT 0,
    lines_matched    INTEGER NOT NULL DEFAULT 0,
    -- The bill's summary line, what its lines add up to, and our own records of the day.
    totals           JSONB,
    fetched_at       TIMESTAMPTZ,
    reconciled_at    TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX reconciliation_days_due ON reconciliation_days (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;

CREATE TABLE reconciliation_differences (
    id           BIGSERIAL PRIMARY KEY,
    bill_date    DATE NOT NULL REFERENCES reconciliation_days (bill_date),
    kind         TEXT NOT NULL CHECK (kind IN (
                     'paid_at_wechat_only', 'unknown_order', 'missing_at_wechat',
                     'amount_differs', 'merchant_differs', 'transaction_differs',
                     'refund_at_wechat_only', 'refund_missing_at_wechat', 'refund_differs',
                     'malformed_line', 'bill_totals_differ', 'day_totals_differ')),
    -- What the difference is about: an order number, an out_refund_no, a line number or
    -- the day; one difference per kind and subject, so that re-running a day adds nothing.
    subject      TEXT NOT NULL,
    order_number TEXT,
    -- Bill minus our books, in fen, where the difference is about money.
    delta_fen    BIGINT NOT NULL DEFAULT 0,
    detail       JSONB NOT NULL,
    status       TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    -- 'reconciliation' when the job settled it itself, 'admin:<name>' for a person.
    resolved_by  TEXT,
    resolution   TEXT,
    resolved_at  TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (bill_date, kind, subject),
    CONSTRAINT resolved_differences_say_how
        CHECK (status = 'open' OR (resolved_by IS NOT NULL AND resolution IS NOT NULL
                                   AND resolved_at IS NOT NULL))
);
CREATE INDEX reconciliation_differences_open ON reconciliation_differences (bill_date)
    WHERE status = 'open';

-- Our payments and refunds of a day, by WeChat's clock where we have it.
CREATE INDEX orders_paid_at ON orders (paid_at) WHERE paid_at IS NOT NULL;
CREATE INDEX order_events_refund_accepted ON order_events (created_at)
    WHERE event = 'refund_accepted';
