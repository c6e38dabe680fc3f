-- Worker liveness that does not depend on how slow Unitel is. Each recharge-worker process
-- holds a lease it renews every second or two; every claim names the lease it was made
-- under. A claim whose lease expired belongs to a dead (or cut off) worker: released at
-- once if nothing was sent, `unknown` if it was. A live worker's claims are never taken,
-- however long its Unitel call runs.
CREATE TABLE worker_leases (
    id          BIGSERIAL PRIMARY KEY,
    worker_id   TEXT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX worker_leases_expiring ON worker_leases (expires_at);

ALTER TABLE orders ADD COLUMN recharge_lease BIGINT;
CREATE INDEX orders_processing ON orders (recharge_lease) WHERE recharge_status = 'processing';
