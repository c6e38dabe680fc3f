//! Reading orders. Every change of an order's state is a transition in
//! [`shared::lifecycle`]; this module only reads.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shared::money::{Fen, Mnt};
use shared::order::{
    Msisdn, OpenId, OrderNumber, PayChannel, PaymentStatus, RechargeStatus, RechargeType,
};
use sqlx::PgPool;

/// An order as stored, decoded into its types.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub order_number: OrderNumber,
    pub openid: String,
    pub phone_number: Msisdn,
    pub product_operator: String,
    pub recharge_type: RechargeType,
    pub product_code: String,
    pub product_name: String,
    pub product_eng_name: Option<String>,
    pub product_unit: Option<i32>,
    pub product_data: Option<String>,
    pub product_days: Option<i32>,
    pub price_mnt: Mnt,
    pub exchange_rate: Decimal,
    pub amount_fen: Fen,
    pub payment_status: PaymentStatus,
    pub prepay_id: Option<String>,
    pub transaction_id: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub recharge_status: RechargeStatus,
    /// When a worker claimed the top-up.
    pub recharge_at: Option<DateTime<Utc>>,
    pub recharged_at: Option<DateTime<Utc>>,
    pub seq_id: Option<String>,
    pub vat_receipt: Option<serde_json::Value>,
    pub recharge_error_code: Option<String>,
    pub recharge_error_message: Option<String>,
    pub anomaly: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Brought over from the replaced system (`import-legacy`).
    pub imported_at: Option<DateTime<Utc>>,
    /// The WeChat Pay channel every call about this order goes through.
    pub pay_channel: PayChannel,
}

/// The order, whoever it belongs to (`owner: None`), or only if it is this user's: someone
/// else's order is indistinguishable from one that does not exist.
pub async fn find(
    db: &PgPool,
    order_number: &OrderNumber,
    owner: Option<&OpenId>,
) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as!(
        OrderRow,
        r#"SELECT order_number AS "order_number: _", openid, phone_number AS "phone_number: _",
                  product_operator, recharge_type AS "recharge_type: _", product_code,
                  product_name, product_eng_name, product_unit, product_data, product_days,
                  price_mnt AS "price_mnt: _", exchange_rate,
                  amount_fen AS "amount_fen: _", payment_status AS "payment_status: _",
                  prepay_id, transaction_id, paid_at, closed_at,
                  recharge_status AS "recharge_status: _", recharge_at,
                  recharged_at, seq_id, vat_receipt, recharge_error_code,
                  recharge_error_message, anomaly, created_at, updated_at, imported_at,
                  pay_channel AS "pay_channel: _"
             FROM orders
            WHERE order_number = $1 AND ($2::text IS NULL OR openid = $2)"#,
        order_number.as_str(),
        owner.map(OpenId::as_str),
    )
    .fetch_optional(db)
    .await
}

#[derive(Debug, Default)]
pub struct ListFilter {
    /// Any of these payment states (none given: all).
    pub payment_statuses: Option<Vec<PaymentStatus>>,
    /// Any of these top-up states (none given: all).
    pub recharge_statuses: Option<Vec<RechargeStatus>>,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// A page of the user's orders, newest first, and how many match in all.
pub async fn list_for_user(
    db: &PgPool,
    openid: &OpenId,
    filter: &ListFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<OrderRow>, i64), sqlx::Error> {
    let payment_statuses = filter.payment_statuses.as_deref();
    let recharge_statuses = filter.recharge_statuses.as_deref();
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM orders
            WHERE openid = $1 AND ($2::text[] IS NULL OR payment_status = ANY($2))
              AND ($3::text[] IS NULL OR recharge_status = ANY($3))
              AND ($4::timestamptz IS NULL OR created_at >= $4)
              AND ($5::timestamptz IS NULL OR created_at < $5)"#,
        openid.as_str(),
        payment_statuses as Option<&[PaymentStatus]>,
        recharge_statuses as Option<&[RechargeStatus]>,
        filter.from,
        filter.until,
    )
    .fetch_one(db)
    .await?;
    let rows = sqlx::query_as!(
        OrderRow,
        r#"SELECT order_number AS "order_number: _", openid, phone_number AS "phone_number: _",
                  product_operator, recharge_type AS "recharge_type: _", product_code,
                  product_name, product_eng_name, product_unit, product_data, product_days,
                  price_mnt AS "price_mnt: _", exchange_rate,
                  amount_fen AS "amount_fen: _", payment_status AS "payment_status: _",
                  prepay_id, transaction_id, paid_at, closed_at,
                  recharge_status AS "recharge_status: _", recharge_at,
                  recharged_at, seq_id, vat_receipt, recharge_error_code,
                  recharge_error_message, anomaly, created_at, updated_at, imported_at,
                  pay_channel AS "pay_channel: _"
             FROM orders
            WHERE openid = $1 AND ($2::text[] IS NULL OR payment_status = ANY($2))
              AND ($3::text[] IS NULL OR recharge_status = ANY($3))
              AND ($4::timestamptz IS NULL OR created_at >= $4)
              AND ($5::timestamptz IS NULL OR created_at < $5)
            ORDER BY created_at DESC, id DESC LIMIT $6 OFFSET $7"#,
        openid.as_str(),
        payment_statuses as Option<&[PaymentStatus]>,
        recharge_statuses as Option<&[RechargeStatus]>,
        filter.from,
        filter.until,
        limit,
        offset,
    )
    .fetch_all(db)
    .await?;
    Ok((rows, total))
}

/// An unpaid order the payment watch looks at.
pub struct UnpaidOrder {
    pub order_number: OrderNumber,
    pub channel: PayChannel,
    pub amount: Fen,
    pub has_prepay: bool,
}

/// Unpaid orders with a payment started at least `after` ago and not asked about since.
pub async fn unpaid_to_query(
    db: &PgPool,
    after: std::time::Duration,
    limit: i64,
) -> Result<Vec<UnpaidOrder>, sqlx::Error> {
    sqlx::query_as!(
        UnpaidOrder,
        r#"SELECT order_number AS "order_number: _", amount_fen AS "amount: _",
                  pay_channel AS "channel: _", true AS "has_prepay!"
             FROM orders
            WHERE payment_status = 'unpaid' AND prepay_id IS NOT NULL
              AND prepay_at < now() - make_interval(secs => $1)
              AND (payment_checked_at IS NULL
                   OR payment_checked_at < now() - make_interval(secs => $1))
            ORDER BY prepay_at LIMIT $2"#,
        after.as_secs_f64(),
        limit,
    )
    .fetch_all(db)
    .await
}

/// Unpaid orders created more than `age` ago, with whether a payment was started.
pub async fn unpaid_older_than(
    db: &PgPool,
    age: std::time::Duration,
    limit: i64,
) -> Result<Vec<UnpaidOrder>, sqlx::Error> {
    sqlx::query_as!(
        UnpaidOrder,
        r#"SELECT order_number AS "order_number: _", amount_fen AS "amount: _",
                  pay_channel AS "channel: _", prepay_id IS NOT NULL AS "has_prepay!"
             FROM orders
            WHERE payment_status = 'unpaid' AND created_at < now() - make_interval(secs => $1)
            ORDER BY created_at LIMIT $2"#,
        age.as_secs_f64(),
        limit,
    )
    .fetch_all(db)
    .await
}

/// The channel an order was created with (`None`: no such order).
pub async fn channel(
    db: &PgPool,
    order_number: &OrderNumber,
) -> Result<Option<PayChannel>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT pay_channel AS "channel: PayChannel" FROM orders WHERE order_number = $1"#,
        order_number.as_str()
    )
    .fetch_optional(db)
    .await
}

pub async fn exists(db: &PgPool, order_number: &OrderNumber) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM orders WHERE order_number = $1) AS "exists!""#,
        order_number.as_str()
    )
    .fetch_one(db)
    .await
}
