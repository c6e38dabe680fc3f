-- The WeChat Pay channel that created each order: every later call about it (query, close,
-- refund) goes through the same one. Orders before this column, and every order imported
-- from the replaced system, were created through WeChat Cloud Hosting.
ALTER TABLE orders
    ADD COLUMN pay_channel text NOT NULL DEFAULT 'cloud'
        CHECK (pay_channel IN ('cloud', 'direct', 'partner'));

-- APIv3 notifications already taken, by WeChat's nonce: a notification replayed within its
-- five-minute validity is refused. Rows older than that window are useless and deleted.
CREATE TABLE wechat_notification_nonces (
    nonce text PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX wechat_notification_nonces_received_at ON wechat_notification_nonces (received_at);
