//! Reading the replaced system's MySQL database (its Prisma schema: `users`, `orders`,
//! `exchange_rates`). Read only: nothing is ever written there.

use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::Row;

pub struct LegacyDb(MySqlPool);

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyUser {
    pub openid: String,
    pub unionid: Option<String>,
    pub appid: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An order row, every column the import reads, as the replaced system stored it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyOrder {
    pub order_number: String,
    pub openid: String,
    pub phone_number: String,
    pub product_operator: String,
    pub product_recharge_type: String,
    pub product_name: String,
    pub product_eng_name: Option<String>,
    pub product_code: String,
    pub product_price_tg: Decimal,
    pub product_price_rmb: Decimal,
    pub product_unit: Option<i32>,
    pub product_data: Option<String>,
    pub product_days: Option<i32>,
    pub seq_id: Option<String>,
    pub payment_status: String,
    pub recharge_status: Option<String>,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub recharge_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct LegacyRate {
    pub rate: Decimal,
    pub updated_at: DateTime<Utc>,
}

/// Prisma writes DATETIME(3) columns in UTC.
fn utc(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

impl LegacyDb {
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let pool = MySqlPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await?;
        Ok(LegacyDb(pool))
    }

    pub async fn users(&self) -> Result<Vec<LegacyUser>, sqlx::Error> {
        sqlx::query(
            "SELECT openid, unionid, appid, created_at FROM users ORDER BY created_at, openid",
        )
        .try_map(|row: MySqlRow| {
            Ok(LegacyUser {
                openid: row.try_get("openid")?,
                unionid: row.try_get("unionid")?,
                appid: row.try_get("appid")?,
                created_at: utc(row.try_get("created_at")?),
            })
        })
        .fetch_all(&self.0)
        .await
    }

    pub async fn orders(&self) -> Result<Vec<LegacyOrder>, sqlx::Error> {
        sqlx::query(
            "SELECT order_number, openid, phone_number, product_operator, product_recharge_type,
                    product_name, product_eng_name, product_code, product_price_tg,
                    product_price_rmb, product_unit, product_data, product_days, seq_id,
                    payment_status, recharge_status, created_at, paid_at, recharge_at
               FROM orders ORDER BY created_at, order_number",
        )
        .try_map(|row: MySqlRow| {
            Ok(LegacyOrder {
                order_number: row.try_get("order_number")?,
                openid: row.try_get("openid")?,
                phone_number: row.try_get("phone_number")?,
                product_operator: row.try_get("product_operator")?,
                product_recharge_type: row.try_get("product_recharge_type")?,
                product_name: row.try_get("product_name")?,
                product_eng_name: row.try_get("product_eng_name")?,
                product_code: row.try_get("product_code")?,
                product_price_tg: row.try_get("product_price_tg")?,
                product_price_rmb: row.try_get("product_price_rmb")?,
                product_unit: row.try_get("product_unit")?,
                product_data: row.try_get("product_data")?,
                product_days: row.try_get("product_days")?,
                seq_id: row.try_get("seq_id")?,
                payment_status: row.try_get("payment_status")?,
                recharge_status: row.try_get("recharge_status")?,
                created_at: utc(row.try_get("created_at")?),
                paid_at: row.try_get::<Option<NaiveDateTime>, _>("paid_at")?.map(utc),
                recharge_at: row
                    .try_get::<Option<NaiveDateTime>, _>("recharge_at")?
                    .map(utc),
            })
        })
        .fetch_all(&self.0)
        .await
    }

    /// The rate the replaced system priced with: its newest active `MNT_TO_CNY` row.
    pub async fn rate(&self) -> Result<Option<LegacyRate>, sqlx::Error> {
        sqlx::query(
            "SELECT rate, updated_at FROM exchange_rates
              WHERE currency = 'MNT_TO_CNY' AND is_active = 1
              ORDER BY updated_at DESC LIMIT 1",
        )
        .try_map(|row: MySqlRow| {
            Ok(LegacyRate {
                rate: row.try_get("rate")?,
                updated_at: utc(row.try_get("updated_at")?),
            })
        })
        .fetch_optional(&self.0)
        .await
    }

    pub async fn close(self) {
        self.0.close().await;
    }
}
