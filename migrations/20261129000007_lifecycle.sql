-- The typed lifecycle (shared/src/lifecycle.rs).
--
-- `paid_at` is when WeChat says the customer paid (`time_end`); when we recorded the
-- payment, which is when its OrderPaid message came to exist, is kept apart.
-- Whether a top-up was ever `unknown`, and who settled it, are columns: the automatic
-- refund of a failed top-up that was once unknown needs a person's verdict, and that rule
-- no longer reads actor names out of the history.
ALTER TABLE orders
    ADD COLUMN payment_recorded_at TIMESTAMPTZ,
    ADD COLUMN unknown_at TIMESTAMPTZ,
    ADD COLUMN unknown_settled_by TEXT
        CHECK (unknown_settled_by IN ('worker', 'reconciliation', 'person'));

UPDATE orders SET payment_recorded_at = paid_at WHERE paid_at IS NOT NULL;

UPDATE orders o SET unknown_at = e.first_unknown
  FROM (SELECT order_number, min(created_at) AS first_unknown
          FROM order_events WHERE event = 'unknown' GROUP BY order_number) e
 WHERE e.order_number = o.order_number;

UPDATE orders o
   SET unknown_settled_by = CASE
         WHEN EXISTS (SELECT 1 FROM order_events e
                       WHERE e.order_number = o.order_number
                         AND e.event IN ('success', 'failed') AND e.actor LIKE 'admin:%')
           THEN 'person'
         WHEN EXISTS (SELECT 1 FROM order_events e
                       WHERE e.order_number = o.order_number
                         AND e.event IN ('success', 'failed') AND e.actor LIKE 'sweep:%')
           THEN 'reconciliation'
         ELSE 'worker' END
 WHERE o.unknown_at IS NOT NULL AND o.recharge_status IN ('success', 'failed');

ALTER TABLE orders
    ADD CONSTRAINT paid_orders_were_recorded
        CHECK (payment_status <> 'paid' OR payment_recorded_at IS NOT NULL),
    -- What the application parses on every read, the database refuses to store otherwise.
    ADD CONSTRAINT order_number_format CHECK (order_number ~ '^[0-9A-Za-z_|*-]{6,32}$'),
    ADD CONSTRAINT phone_number_format CHECK (phone_number ~ '^[1-9][0-9]{7}$'),
    ADD CONSTRAINT product_operator_known CHECK (product_operator = 'unitel');

-- The recharge sweep finds paid orders by when their payment was recorded.
DROP INDEX orders_needing_attention;
CREATE INDEX orders_needing_attention ON orders (recharge_status, payment_recorded_at)
    WHERE payment_status = 'paid' AND recharge_status IN ('pending', 'processing', 'unknown');

-- The alert producer reads each source in bounded batches, so its cursor is a position
-- in (transaction id, id) order: rows after (next_txid, last_id) are news.
ALTER TABLE alert_cursors ADD COLUMN last_id BIGINT NOT NULL DEFAULT 0;
DROP INDEX order_events_by_txid;
DROP INDEX payment_anomalies_by_txid;
CREATE INDEX order_events_by_txid ON order_events (txid, id);
CREATE INDEX payment_anomalies_by_txid ON payment_anomalies (txid, id);
