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

/// What the order object shows of its owner.
pub struct Owner {
    pub appid: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn find(db: &PgPool, openid: &OpenId) -> Result<Owner, sqlx::Error> {
    sqlx::query_as!(
        Owner,
        "SELECT appid, created_at FROM users WHERE openid = $1",
        openid.as_str(),
    )
    .fetch_one(db)
    .await
}

pub async fn id_of(db: &PgPool, openid: &OpenId) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!("SELECT id FROM users WHERE openid = $1", openid.as_str())
        .fetch_optional(db)
        .await
}

/// A user of the replaced system's, with the day they came; false if they are here already.
pub async fn import(
    db: &PgPool,
    openid: &OpenId,
    unionid: Option<&str>,
    appid: Option<&str>,
    created_at: chrono::DateTime<chrono::Utc>,
) -> Result<bool, sqlx::Error> {
    let created = sqlx::query_scalar!(
        "INSERT INTO users (openid, unionid, appid, created_at, last_seen_at)
         VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (openid) DO NOTHING RETURNING id",
        openid.as_str(),
        unionid,
        appid,
        created_at,
    )
    .fetch_optional(db)
    .await?;
    Ok(created.is_some())
}
