-- The worker's sweep: when a paid order was last put back on the queue (and how many times,
-- which keys its outbox rows), and when an `unknown` order was last checked with Unitel.
ALTER TABLE orders
    ADD COLUMN requeued_at TIMESTAMPTZ,
    ADD COLUMN requeue_count INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN reconciled_at TIMESTAMPTZ;
