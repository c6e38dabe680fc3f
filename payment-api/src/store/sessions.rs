//! Direct mode's sessions, by the SHA-256 of their token (the token itself is never here;
//! `crate::sessions::token` makes both).

use std::time::Duration;

use sqlx::PgPool;

/// Expired sessions one login deletes at most: more than it adds, and few enough that a
/// login never waits on a cleanup.
const PURGED_PER_LOGIN: i64 = 100;

/// Opens a session for `ttl` from now, and deletes some expired ones (rows another login
/// is deleting are skipped, not waited for).
pub async fn insert(
    db: &PgPool,
    hash: &[u8; 32],
    user_id: i64,
    ttl: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "WITH purged AS (
             DELETE FROM sessions WHERE id IN (
                 SELECT id FROM sessions WHERE expires_at < now()
                 ORDER BY expires_at LIMIT $4 FOR UPDATE SKIP LOCKED)
         )
         INSERT INTO sessions (token_hash, user_id, expires_at)
         VALUES ($1, $2, now() + make_interval(secs => $3))",
        &hash[..],
        user_id,
        ttl.as_secs_f64(),
        PURGED_PER_LOGIN,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The user (id, openid) of the live session with this hash, marked as seen now, as the
/// gateway's users are on every call.
pub async fn live_user(db: &PgPool, hash: &[u8; 32]) -> Result<Option<(i64, String)>, sqlx::Error> {
    let row = sqlx::query!(
        "UPDATE users SET last_seen_at = now()
         FROM sessions
         WHERE sessions.token_hash = $1 AND sessions.user_id = users.id
           AND sessions.revoked_at IS NULL AND sessions.expires_at > now()
         RETURNING users.id, users.openid",
        &hash[..],
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.id, r.openid)))
}

/// Revokes the live session with this hash; false if there was none.
pub async fn revoke(db: &PgPool, hash: &[u8; 32]) -> Result<bool, sqlx::Error> {
    let revoked = sqlx::query!(
        "UPDATE sessions SET revoked_at = now()
         WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()",
        &hash[..],
    )
    .execute(db)
    .await?
    .rows_affected();
    Ok(revoked > 0)
}
