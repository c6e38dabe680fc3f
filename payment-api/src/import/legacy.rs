//! Reading the replaced system's MySQL database (its Prisma schema: `users`, `orders`,
//! `exchange_rates`). One thing is written there: the import's claim on each order it may
//! send from here ([`LegacyDb::claim`]), so that an instance of that system still running
//! never sends it too.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::Row;

/// The `recharge_at` the import claims an order with. That system claims a top-up by
/// setting `recharge_at` where it is null, or older than ten minutes without a `seq_id`
/// (a claim it takes to be abandoned); a claim dated in the year 9999 is never null and
/// never older than ten minutes, so none of its paths (the callback's, the minute cron's)
/// can take the order afterwards. Its result check needs a `seq_id`, which stays null.
pub(super) fn import_claim() -> NaiveDateTime {
    year_9999_at(59)
}

/// The `recharge_at` the import freezes a claim of that system's own with, once the order
/// is `unknown` here: never seen as abandoned, so it is not sent again there while a person
/// settles it here. A second apart from [`import_claim`], so that a later run tells a
/// top-up that may have been sent from one never sent.
pub(super) fn frozen_claim() -> NaiveDateTime {
    year_9999_at(58)
}

fn year_9999_at(second: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|day| day.and_hms_opt(23, 59, second))
        .expect("a valid date")
}

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

impl LegacyOrder {
    /// An earlier run of the import claimed it (and stopped before creating it here): the
    /// replaced system never sent it.
    pub fn claimed_by_import(&self) -> bool {
        self.seq_id.is_none() && self.recharge_at == Some(utc(import_claim()))
    }

    /// When that system claimed the top-up; not the import's markers.
    pub fn claimed_at(&self) -> Option<DateTime<Utc>> {
        self.recharge_at
            .filter(|at| ![import_claim(), frozen_claim()].contains(&at.naive_utc()))
    }
}

impl LegacyDb {
    pub async fn connect(options: MySqlConnectOptions) -> Result<Self, sqlx::Error> {
        let pool = MySqlPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        Ok(LegacyDb(pool))
    }

    /// Takes the order from the replaced system's top-up paths, if it has never claimed
    /// it (no `recharge_at`, no `seq_id`); false when it has, since it was read: it may be
    /// sending it now.
    pub async fn claim(&self, order_number: &str) -> Result<bool, sqlx::Error> {
        let claimed = sqlx::query(
            "UPDATE orders SET recharge_at = ?
              WHERE order_number = ? AND recharge_at IS NULL AND seq_id IS NULL",
        )
        .bind(import_claim())
        .bind(order_number)
        .execute(&self.0)
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Keeps that system from taking a claim of its own back (see [`frozen_claim`]): its
    /// cron takes back a paid, `pending` order's claim once it is ten minutes old without a
    /// `seq_id`, and sends the top-up again. Whatever the claim is now; nothing when the
    /// order is not one the cron could take back.
    pub async fn freeze(&self, order_number: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE orders SET recharge_at = ?
              WHERE order_number = ? AND payment_status = 'paid' AND recharge_status = 'pending'
                AND seq_id IS NULL AND recharge_at < ?",
        )
        .bind(frozen_claim())
        .bind(order_number)
        .bind(frozen_claim())
        .execute(&self.0)
        .await?;
        Ok(())
    }

    /// The order's claim there now: (`recharge_at`, `seq_id`).
    pub async fn claim_of(
        &self,
        order_number: &str,
    ) -> Result<(Option<DateTime<Utc>>, Option<String>), sqlx::Error> {
        sqlx::query("SELECT recharge_at, seq_id FROM orders WHERE order_number = ?")
            .bind(order_number)
            .try_map(|row: MySqlRow| {
                Ok((
                    row.try_get::<Option<NaiveDateTime>, _>("recharge_at")?
                        .map(utc),
                    row.try_get("seq_id")?,
                ))
            })
            .fetch_one(&self.0)
            .await
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
