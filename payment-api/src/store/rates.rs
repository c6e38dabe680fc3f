use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shared::money::MntPerYuan;
use sqlx::PgPool;

pub struct CurrentRate {
    pub rate: MntPerYuan,
    pub set_at: DateTime<Utc>,
}

pub async fn current(db: &PgPool) -> Result<CurrentRate, anyhow::Error> {
    let (rate, set_at): (Decimal, DateTime<Utc>) = sqlx::query_as(
        "SELECT rate, created_at FROM exchange_rates WHERE currency_pair = 'MNT_TO_CNY'
         ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .fetch_optional(db)
    .await?
    .ok_or_else(|| anyhow::anyhow!("no MNT_TO_CNY exchange rate is configured"))?;
    Ok(CurrentRate {
        rate: MntPerYuan::new(rate)?,
        set_at,
    })
}
