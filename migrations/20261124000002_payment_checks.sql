-- When payment-api last asked WeChat about an unpaid order (lost-callback sweep), so an
-- abandoned order is not queried on every round.
ALTER TABLE orders ADD COLUMN payment_checked_at TIMESTAMPTZ;
CREATE INDEX orders_unpaid ON orders (created_at) WHERE payment_status = 'unpaid';
