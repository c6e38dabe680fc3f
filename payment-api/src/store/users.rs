use shared::order::OpenId;
use sqlx::PgPool;

/// Creates the user on first sight, as the system we replace did, and remembers the
/// latest unionid/appid the gateway sent.
pub async fn upsert(
    db: &PgPool,
    openid: &OpenId,
    unionid: Option<&str>,
    appid: Option<&str>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO users (openid, unionid, appid) VALUES ($1, $2, $3)
         ON CONFLICT (openid) DO UPDATE
            SET unionid = COALESCE(EXCLUDED.unionid, users.unionid),
                appid = COALESCE(EXCLUDED.appid, users.appid),
                last_seen_at = now()
         RETURNING id",
        openid.as_str(),
        unionid,
        appid,
    )
    .fetch_one(db)
    .await
}
