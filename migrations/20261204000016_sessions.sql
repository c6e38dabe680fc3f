-- Direct mode's sessions (WECHAT_PAY_MODE=direct): a bearer token we issue once wx.login's
-- code was exchanged at WeChat. Only the token's SHA-256 is kept, so that a copy of this
-- table lets nobody act as a customer. A session is live while unrevoked and unexpired;
-- expired rows are deleted as later logins come by (payment-api's store::sessions).
CREATE TABLE sessions (
    id         BIGSERIAL PRIMARY KEY,
    token_hash BYTEA NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);

CREATE INDEX sessions_expires_at ON sessions (expires_at);
