-- The latest moment a top-up marked sent can still reach Unitel: the worker's lease expiry
-- when it marked the order (it writes no request after that) plus its own Unitel timeout.
-- Written by the worker itself, so that payment-api needs none of the worker's settings to
-- know when a person may declare the top-up failed. NULL: not marked sent, or marked by a
-- worker that recorded no bound (payment-api then assumes the longest one).
ALTER TABLE orders ADD COLUMN recharge_in_flight_until TIMESTAMPTZ;
