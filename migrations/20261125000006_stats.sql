-- Statistics for the operator, kept as roll-ups so that a year of orders answers in
-- milliseconds. Days and hours are Asia/Shanghai's, where the customers are; every order
-- counts in the hour it was created, whatever happened to it later.
--
-- Freshness without slowing the money path: a change to an order's or a refund's status
-- appends a marker (which day, and for a payment which customer) in the same transaction.
-- Appending takes no lock anyone else waits on. The refresher (payment-api, under an
-- advisory lock) deletes the markers it can see, which are exactly those of committed
-- transactions, and recomputes the days and customers they name from the orders
-- themselves; a marker committed later stays for the next refresh.

CREATE TABLE stats_changes (
    day     DATE NOT NULL,
    -- Set when the order's payment status changed: that customer's days are recomputed.
    user_id BIGINT
);

CREATE FUNCTION stats_mark_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_changes (day, user_id)
    VALUES ((NEW.created_at AT TIME ZONE 'Asia/Shanghai')::date,
            CASE WHEN TG_OP = 'INSERT' AND NEW.payment_status = 'paid' THEN NEW.user_id
                 WHEN TG_OP = 'UPDATE' AND OLD.payment_status IS DISTINCT FROM NEW.payment_status
                 THEN NEW.user_id END);
    RETURN NULL;
END $$;

CREATE FUNCTION stats_mark_refund() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_changes (day)
    SELECT (created_at AT TIME ZONE 'Asia/Shanghai')::date FROM orders
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

-- Orders counted by the hour they were created and by everything the statistics split on.
CREATE TABLE stats_hourly (
    -- Asia/Shanghai local time, truncated to the hour.
    hour            TIMESTAMP NOT NULL,
    product_code    TEXT NOT NULL,
    product_name    TEXT NOT NULL,
    recharge_type   TEXT NOT NULL,
    payment_status  TEXT NOT NULL,
    -- 'pending' also stands for 'processing'.
    recharge_status TEXT NOT NULL,
    -- The refund's status, 'none' without one.
    refund_status   TEXT NOT NULL,
    orders          BIGINT NOT NULL,
    amount_fen      BIGINT NOT NULL,
    price_mnt       BIGINT NOT NULL
);
CREATE INDEX stats_hourly_by_hour ON stats_hourly (hour);

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
CREATE INDEX orders_paid_by_user ON orders (user_id) WHERE payment_status = 'paid';

-- Orders placed before the roll-ups existed are counted by the first refresh.
INSERT INTO stats_changes (day, user_id)
SELECT DISTINCT (created_at AT TIME ZONE 'Asia/Shanghai')::date,
       CASE WHEN payment_status = 'paid' THEN user_id END
  FROM orders;
