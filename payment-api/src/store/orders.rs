use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shared::money::{Fen, Mnt, MntPerYuan};
use shared::order::{Msisdn, OpenId, Operator, OrderNumber, RechargeType};
use sqlx::{PgPool, Postgres, QueryBuilder};

/// An order as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    pub order_number: String,
    pub openid: String,
    pub phone_number: String,
    pub product_operator: String,
    pub recharge_type: String,
    pub product_code: String,
    pub product_name: String,
    pub product_eng_name: Option<String>,
    pub price_mnt: i64,
    pub exchange_rate: Decimal,
    pub amount_fen: i64,
    pub payment_status: String,
    pub prepay_id: Option<String>,
    pub prepay_at: Option<DateTime<Utc>>,
    pub transaction_id: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub recharge_status: String,
    pub recharged_at: Option<DateTime<Utc>>,
    pub seq_id: Option<String>,
    pub vat_receipt: Option<serde_json::Value>,
    pub recharge_error_code: Option<String>,
    pub recharge_error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What `find` reads; public so that the benchmark can give pgbench the same statement.
pub const COLUMNS: &str = "order_number, openid, phone_number, product_operator, recharge_type,
    product_code, product_name, product_eng_name, price_mnt, exchange_rate, amount_fen,
    payment_status, prepay_id, prepay_at, transaction_id, paid_at, closed_at, recharge_status,
    recharged_at, seq_id, vat_receipt, recharge_error_code, recharge_error_message,
    created_at, updated_at";

pub struct NewOrder<'a> {
    pub order_number: &'a OrderNumber,
    pub user_id: i64,
    pub openid: &'a OpenId,
    pub msisdn: &'a Msisdn,
    pub operator: Operator,
    pub recharge_type: RechargeType,
    pub product_code: &'a str,
    pub product_name: &'a str,
    pub product_eng_name: Option<&'a str>,
    pub price: Mnt,
    pub rate: MntPerYuan,
    pub amount: Fen,
}

pub async fn insert(db: &PgPool, order: &NewOrder<'_>) -> Result<OrderRow, sqlx::Error> {
    let sql = format!(
        "WITH created AS (
            INSERT INTO orders (order_number, user_id, openid, phone_number, product_operator,
                recharge_type, product_code, product_name, product_eng_name, price_mnt,
                exchange_rate, amount_fen)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            RETURNING {COLUMNS}
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, 'created', 'user:' || openid,
                   jsonb_build_object('amountFen', amount_fen, 'priceMnt', price_mnt,
                                      'exchangeRate', exchange_rate)
            FROM created
         )
         SELECT {COLUMNS} FROM created"
    );
    sqlx::query_as(&sql)
        .bind(order.order_number.as_str())
        .bind(order.user_id)
        .bind(order.openid.as_str())
        .bind(order.msisdn.as_str())
        .bind(order.operator.as_str())
        .bind(order.recharge_type.as_str())
        .bind(order.product_code)
        .bind(order.product_name)
        .bind(order.product_eng_name)
        .bind(order.price.get())
        .bind(order.rate.get())
        .bind(order.amount.get())
        .fetch_one(db)
        .await
}

pub async fn find(
    db: &PgPool,
    order_number: &OrderNumber,
) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM orders WHERE order_number = $1"
    ))
    .bind(order_number.as_str())
    .fetch_optional(db)
    .await
}

/// The order if it belongs to this user; someone else's order is indistinguishable from
/// one that does not exist.
pub async fn find_owned(
    db: &PgPool,
    order_number: &OrderNumber,
    openid: &OpenId,
) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM orders WHERE order_number = $1 AND openid = $2"
    ))
    .bind(order_number.as_str())
    .bind(openid.as_str())
    .fetch_optional(db)
    .await
}

/// False if the order stopped being unpaid meanwhile (closed by the sweep, or paid).
pub async fn record_prepay(
    db: &PgPool,
    order_number: &OrderNumber,
    prepay_id: &str,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE orders SET prepay_id = $2, prepay_at = now(), updated_at = now()
         WHERE order_number = $1 AND payment_status = 'unpaid'",
    )
    .bind(order_number.as_str())
    .bind(prepay_id)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

#[derive(Debug, Default)]
pub struct ListFilter {
    pub payment_status: Option<String>,
    pub recharge_status: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

pub async fn list_for_user(
    db: &PgPool,
    openid: &OpenId,
    filter: &ListFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<OrderRow>, i64), sqlx::Error> {
    fn push_filters<'a>(q: &mut QueryBuilder<'a, Postgres>, openid: &'a OpenId, f: &'a ListFilter) {
        q.push(" WHERE openid = ").push_bind(openid.as_str());
        if let Some(s) = &f.payment_status {
            q.push(" AND payment_status = ").push_bind(s);
        }
        if let Some(s) = &f.recharge_status {
            q.push(" AND recharge_status = ").push_bind(s);
        }
        if let Some(from) = f.from {
            q.push(" AND created_at >= ").push_bind(from);
        }
        if let Some(until) = f.until {
            q.push(" AND created_at < ").push_bind(until);
        }
    }
    let mut count = QueryBuilder::new("SELECT count(*) FROM orders");
    push_filters(&mut count, openid, filter);
    let total: i64 = count.build_query_scalar().fetch_one(db).await?;

    let mut page = QueryBuilder::new(format!("SELECT {COLUMNS} FROM orders"));
    push_filters(&mut page, openid, filter);
    page.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(offset);
    let rows = page.build_query_as().fetch_all(db).await?;
    Ok((rows, total))
}

/// `unpaid → closed`: the order can no longer be paid. With `only_without_prepay`, an
/// order whose payment started meanwhile is left for a close at WeChat first.
pub async fn close_unpaid(
    db: &PgPool,
    order_number: &str,
    actor: &str,
    reason: &str,
    only_without_prepay: bool,
) -> Result<bool, sqlx::Error> {
    let closed: Option<String> = sqlx::query_scalar(
        "WITH closed AS (
            UPDATE orders SET payment_status = 'closed', closed_at = now(), updated_at = now()
             WHERE order_number = $1 AND payment_status = 'unpaid'
               AND (NOT $3 OR prepay_id IS NULL)
            RETURNING order_number
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, 'closed', $4, jsonb_build_object('reason', $2::text)
            FROM closed
         )
         SELECT order_number FROM closed",
    )
    .bind(order_number)
    .bind(reason)
    .bind(only_without_prepay)
    .bind(actor)
    .fetch_optional(db)
    .await?;
    Ok(closed.is_some())
}

pub async fn mark_payment_checked(db: &PgPool, order_number: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE orders SET payment_checked_at = now() WHERE order_number = $1")
        .bind(order_number)
        .execute(db)
        .await?;
    Ok(())
}

/// Unpaid orders with a payment started at least `after` ago and not asked about since.
pub async fn unpaid_to_query(
    db: &PgPool,
    after: std::time::Duration,
    limit: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT order_number, amount_fen FROM orders
          WHERE payment_status = 'unpaid' AND prepay_id IS NOT NULL
            AND prepay_at < now() - make_interval(secs => $1)
            AND (payment_checked_at IS NULL OR payment_checked_at < now() - make_interval(secs => $1))
          ORDER BY prepay_at LIMIT $2",
    )
    .bind(after.as_secs_f64())
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Unpaid orders created more than `age` ago, with whether a payment was started.
pub async fn unpaid_older_than(
    db: &PgPool,
    age: std::time::Duration,
    limit: i64,
) -> Result<Vec<(String, i64, bool)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT order_number, amount_fen, prepay_id IS NOT NULL FROM orders
          WHERE payment_status = 'unpaid' AND created_at < now() - make_interval(secs => $1)
          ORDER BY created_at LIMIT $2",
    )
    .bind(age.as_secs_f64())
    .bind(limit)
    .fetch_all(db)
    .await
}
