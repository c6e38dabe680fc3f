//! The replaced system's figures (`/statistics*`): users, orders and revenue, filtered by
//! the days and the app a caller names.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Which users and orders count; `None` counts all.
pub struct StatsFilter {
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub appid: Option<String>,
}

pub struct UserCounts {
    pub total: i64,
    /// First seen since `today`.
    pub today: i64,
}

/// Users (of the filter's app), and how many were first seen since `today`.
pub async fn user_counts(
    db: &PgPool,
    filter: &StatsFilter,
    today: DateTime<Utc>,
) -> Result<UserCounts, sqlx::Error> {
    let counts = sqlx::query!(
        r#"SELECT count(*) AS "total!", count(*) FILTER (WHERE created_at >= $2) AS "today!"
             FROM users WHERE ($1::text IS NULL OR appid = $1)"#,
        filter.appid,
        today,
    )
    .fetch_one(db)
    .await?;
    Ok(UserCounts {
        total: counts.total,
        today: counts.today,
    })
}

/// Users per app (`unknown` when none was recorded).
pub async fn users_by_appid(db: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    Ok(sqlx::query!(
        r#"SELECT COALESCE(appid, 'unknown') AS "appid!", count(*) AS "users!"
                     FROM users GROUP BY 1"#
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| (r.appid, r.users))
    .collect())
}

/// Orders of one operator and recharge type.
pub struct OrderCounts {
    pub operator: String,
    pub recharge_type: String,
    pub total: i64,
    pub pending: i64,
    pub paid: i64,
    pub completed: i64,
    /// Created since `today`.
    pub today: i64,
}

/// Orders created within the filter's days, per operator and recharge type.
pub async fn order_counts(
    db: &PgPool,
    filter: &StatsFilter,
    today: DateTime<Utc>,
) -> Result<Vec<OrderCounts>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT o.product_operator AS "operator!", o.recharge_type AS "recharge_type!",
                  count(*) AS "total!",
                  count(*) FILTER (WHERE o.payment_status <> 'paid') AS "pending!",
                  count(*) FILTER (WHERE o.payment_status = 'paid') AS "paid!",
                  count(*) FILTER (WHERE o.recharge_status = 'success') AS "completed!",
                  count(*) FILTER (WHERE o.created_at >= $4) AS "today!"
             FROM orders o
            WHERE ($1::timestamptz IS NULL OR o.created_at >= $1)
              AND ($2::timestamptz IS NULL OR o.created_at < $2)
              AND ($3::text IS NULL OR EXISTS
                    (SELECT 1 FROM users u WHERE u.id = o.user_id AND u.appid = $3))
            GROUP BY 1, 2"#,
        filter.from,
        filter.until,
        filter.appid,
        today,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| OrderCounts {
            operator: row.operator,
            recharge_type: row.recharge_type,
            total: row.total,
            pending: row.pending,
            paid: row.paid,
            completed: row.completed,
            today: row.today,
        })
        .collect())
}

/// Fen paid within the filter's days, since `today` and since `month`.
pub struct RevenueSums {
    pub total: i64,
    pub today: i64,
    pub month: i64,
}

pub async fn revenue_sums(
    db: &PgPool,
    filter: &StatsFilter,
    today: DateTime<Utc>,
    month: DateTime<Utc>,
) -> Result<RevenueSums, sqlx::Error> {
    let sums = sqlx::query!(
        r#"SELECT COALESCE(sum(amount_fen) FILTER (WHERE ($1::timestamptz IS NULL OR paid_at >= $1)
                                                    AND ($2::timestamptz IS NULL OR paid_at < $2)), 0)::bigint AS "total!",
                  COALESCE(sum(amount_fen) FILTER (WHERE paid_at >= $4), 0)::bigint AS "today!",
                  COALESCE(sum(amount_fen) FILTER (WHERE paid_at >= $5), 0)::bigint AS "month!"
             FROM orders o
            WHERE payment_status = 'paid'
              AND ($3::text IS NULL OR EXISTS
                    (SELECT 1 FROM users u WHERE u.id = o.user_id AND u.appid = $3))"#,
        filter.from,
        filter.until,
        filter.appid,
        today,
        month,
    )
    .fetch_one(db)
    .await?;
    Ok(RevenueSums {
        total: sums.total,
        today: sums.today,
        month: sums.month,
    })
}
