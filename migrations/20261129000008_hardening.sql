-- A WeChat transaction pays at most one order: a callback or query that names a
-- transaction already recorded for another order is an anomaly, never a payment.
CREATE UNIQUE INDEX orders_transaction_id ON orders (transaction_id)
    WHERE transaction_id IS NOT NULL;

-- Rate limits every payment-api instance shares: hits per key and minute. Unlogged: a
-- crash of PostgreSQL forgets the counts, which forgives at most a minute.
CREATE UNLOGGED TABLE rate_limits (
    key          TEXT NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    hits         INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
);
