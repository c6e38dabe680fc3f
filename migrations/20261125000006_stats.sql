-- Statistics for the operator, kept as roll-ups so that a year of orders answers in
-- milliseconds. Days and hours are Asia/Shanghai's, where the customers are; every order
-- counts in the hour it was created, whatever happened to it later.
--
-- Freshness without slowing the money path: a change to an order's or a refund's status
-- appends a marker (which hour, and for a payment which customer) in the same transaction.
-- Appending takes no lock anyone else waits on. The refresher (payment-api, under an
-- advisory lock) deletes the markers it can see, which are exactly those of committed
-- transactions, and recomputes the hours and customers they name from the orders
-- themselves; a marker committed later stays for the next refresh.

CREATE TABLE stats_changes (
    -- The order's creation hour, Asia/Shanghai local time.
    hour    TIMESTAMP NOT NULL,
    -- Set when the order's payment status changed: that customer's days are recomputed.
    user_id BIGINT
);

CREATE FUNCTION stats_mark_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_changes (hour, user_id)
    VALUES (date_trunc('hour', NEW.created_at AT TIME ZONE 'Asia/Shanghai'),
            CASE WHEN TG_OP = 'INSERT' AND NEW.payment_status = 'paid' THEN NEW.user_id
                 WHEN TG_OP = 'UPDATE' AND OLD.payment_status IS DISTINCT FROM NEW.payment_status
                 THEN NEW.user_id END);
    RETURN NULL;
END $$;

CREATE FUNCTION stats_mark_refund() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_changes (hour)
    SELECT date_trunc('hour', created_at AT TIME ZONE 'Asia/Shanghai') FROM orders
     WHERE order_number = NEW.order_number;
    RETURN NULL;
END $$;

CREATE TRIGGER orders_stats_insert AFTER INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION stats_mark_order();
-- A claim (pending → processing) or its release changes nothing the statistics show.
CREATE TRIGGER orders_stats_update AFTER UPDATE OF payment_status, recharge_status ON orders
    FOR EACH ROW
    WHEN (OLD.payment_status IS DISTINCT FROM NEW.payment_status
          OR (OLD.recharge_status IS DISTINCT FROM NEW.recharge_status
              AND NOT (OLD.recharge_status IN ('pending', 'processing')
                       AND NEW.recharge_status IN ('pending', 'processing'))))
    EXECUTE FUNCTION stats_mark_order();
CREATE TRIGGER refunds_stats_insert AFTER INSERT ON refunds
    FOR EACH ROW EXECUTE FUNCTION stats_mark_refund();
CREATE TRIGGER refunds_stats_update AFTER UPDATE OF status ON refunds
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION stats_mark_refund();

-- Orders by the hour they were created (Asia/Shanghai local time) and product, with what
-- became of them. 'pending' top-ups include those being processed; refunds are counted by
-- their status.
CREATE TABLE stats_hourly (
    hour              TIMESTAMP NOT NULL,
    product_code      TEXT NOT NULL,
    recharge_type     TEXT NOT NULL,
    product_name      TEXT NOT NULL,
    created           BIGINT NOT NULL,
    paid              BIGINT NOT NULL,
    paid_fen          BIGINT NOT NULL,
    paid_mnt          BIGINT NOT NULL,
    success           BIGINT NOT NULL,
    failed            BIGINT NOT NULL,
    unknown           BIGINT NOT NULL,
    pending           BIGINT NOT NULL,
    credited_mnt      BIGINT NOT NULL,
    refunds_pending   BIGINT NOT NULL,
    refunds_succeeded BIGINT NOT NULL,
    refunds_failed    BIGINT NOT NULL,
    refunded_fen      BIGINT NOT NULL,
    PRIMARY KEY (hour, product_code, recharge_type)
);
-- The same by day, summed from the hours: what a range of days reads.
CREATE TABLE stats_daily (LIKE stats_hourly);
ALTER TABLE stats_daily RENAME COLUMN hour TO day;
ALTER TABLE stats_daily ALTER COLUMN day TYPE DATE;
ALTER TABLE stats_daily ADD PRIMARY KEY (day, product_code, recharge_type);

-- Customers (users with a paid order) by day: one row per customer and day they paid,
-- with the day they last paid before ('-infinity' on their first). Counting a range's
-- rows whose previous day lies before the range counts each customer once.
CREATE TABLE customer_days (
    user_id  BIGINT NOT NULL,
    day      DATE NOT NULL,
    prev_day DATE NOT NULL,
    PRIMARY KEY (user_id, day)
);
CREATE TABLE customer_day_counts (
    day       DATE NOT NULL,
    prev_day  DATE NOT NULL,
    customers BIGINT NOT NULL,
    PRIMARY KEY (day, prev_day)
);
-- Counts that fell to zero, removed after each refresh without reading the whole table.
CREATE INDEX customer_day_counts_zero ON customer_day_counts (day) WHERE customers = 0;
CREATE INDEX orders_paid_by_user ON orders (user_id) WHERE payment_status = 'paid';

-- The operator's list of orders waiting for a person (GET /admin/attention).
CREATE INDEX orders_unsettled ON orders (paid_at) WHERE recharge_status IN ('unknown', 'failed');
CREATE INDEX refunds_failed ON refunds (order_number) WHERE status = 'failed';

-- Orders placed before the roll-ups existed are counted by the first refresh.
INSERT INTO stats_changes (hour, user_id)
SELECT DISTINCT date_trunc('hour', created_at AT TIME ZONE 'Asia/Shanghai'),
       CASE WHEN payment_status = 'paid' THEN user_id END
  FROM orders;
