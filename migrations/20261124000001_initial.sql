-- The top-up backend's schema. Forward-only: change it with a new migration, never by
-- editing this one (sqlx checks the checksum of every applied migration).

CREATE TABLE users (
    id           BIGSERIAL PRIMARY KEY,
    openid       TEXT NOT NULL UNIQUE,
    unionid      TEXT,
    appid        TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- How many tugrik one yuan buys. The current rate is the newest row; old rows stay so that
-- every order's price can be explained.
CREATE TABLE exchange_rates (
    id            BIGSERIAL PRIMARY KEY,
    currency_pair TEXT NOT NULL CHECK (currency_pair = 'MNT_TO_CNY'),
    rate          NUMERIC(14, 4) NOT NULL CHECK (rate > 0),
    set_by        TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX exchange_rates_newest ON exchange_rates (currency_pair, created_at DESC, id DESC);
INSERT INTO exchange_rates (currency_pair, rate, set_by) VALUES ('MNT_TO_CNY', 440, 'initial migration');

CREATE TABLE orders (
    id                     BIGSERIAL PRIMARY KEY,
    order_number           TEXT NOT NULL UNIQUE,
    user_id                BIGINT NOT NULL REFERENCES users (id),
    openid                 TEXT NOT NULL,
    phone_number           TEXT NOT NULL,
    product_operator       TEXT NOT NULL,
    recharge_type          TEXT NOT NULL CHECK (recharge_type IN ('voice', 'data', 'postpaid')),
    product_code           TEXT NOT NULL,
    product_name           TEXT NOT NULL,
    product_eng_name       TEXT,
    -- What was sold, at what rate, for how much: fixed when the order is created.
    price_mnt              BIGINT NOT NULL CHECK (price_mnt > 0),
    exchange_rate          NUMERIC(14, 4) NOT NULL CHECK (exchange_rate > 0),
    amount_fen             BIGINT NOT NULL CHECK (amount_fen > 0),

    payment_status         TEXT NOT NULL DEFAULT 'unpaid'
                           CHECK (payment_status IN ('unpaid', 'paid', 'closed')),
    prepay_id              TEXT,
    prepay_at              TIMESTAMPTZ,
    transaction_id         TEXT,
    paid_at                TIMESTAMPTZ,
    closed_at              TIMESTAMPTZ,

    recharge_status        TEXT NOT NULL DEFAULT 'pending'
                           CHECK (recharge_status IN ('pending', 'processing', 'success', 'failed', 'unknown')),
    -- The claim: set by one worker in one statement; nobody else touches the order while
    -- it is set, unless it went stale before anything was sent.
    recharge_at            TIMESTAMPTZ,
    recharge_worker        TEXT,
    -- Set just before the request to Unitel is written: from then on the order may have
    -- been credited and must never be sent again automatically.
    recharge_sent_at       TIMESTAMPTZ,
    recharge_attempts      INTEGER NOT NULL DEFAULT 0,
    recharged_at           TIMESTAMPTZ,
    seq_id                 TEXT,
    sv_id                  TEXT,
    vat_receipt            JSONB,
    recharge_error_code    TEXT,
    recharge_error_message TEXT,

    -- The last callback or query that did not match this order (amount, merchant...).
    anomaly                TEXT,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT paid_orders_have_a_transaction
        CHECK (payment_status <> 'paid' OR (transaction_id IS NOT NULL AND paid_at IS NOT NULL)),
    CONSTRAINT recharge_only_after_payment
        CHECK (recharge_status = 'pending' OR payment_status = 'paid')
);
CREATE INDEX orders_by_user ON orders (openid, created_at DESC);
CREATE INDEX orders_created ON orders (created_at);
CREATE INDEX orders_needing_attention ON orders (recharge_status, paid_at)
    WHERE payment_status = 'paid' AND recharge_status IN ('pending', 'processing', 'unknown');

-- Messages to publish, written in the same transaction as the state change they announce,
-- so that a crash can delay a message but never lose it.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    order_number    TEXT NOT NULL,
    routing_key     TEXT NOT NULL,
    payload         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    published_at    TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Callbacks and queries that did not match what we know, kept for a person.
CREATE TABLE payment_anomalies (
    id           BIGSERIAL PRIMARY KEY,
    order_number TEXT,
    kind         TEXT NOT NULL,
    detail       JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX payment_anomalies_by_order ON payment_anomalies (order_number, id);

-- Every transition of every order: what happened, who did it, why.
CREATE TABLE order_events (
    id           BIGSERIAL PRIMARY KEY,
    order_number TEXT NOT NULL,
    event        TEXT NOT NULL,
    actor        TEXT NOT NULL,
    detail       JSONB,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX order_events_by_order ON order_events (order_number, id);
