//! Orders in bulk, written straight into the database for the statistics tests and the
//! statistics benchmark: every status and refund state, spread over days, with customers
//! who come back. Deterministic for a given seed. A system run beside seeded orders should
//! have no worker and a payment window longer than the history, or its sweeps will start
//! settling them.

use sqlx::{Connection, PgConnection};

pub struct Seed {
    /// Distinguishes this batch's users and order numbers from any other.
    pub tag: &'static str,
    pub orders: i64,
    pub users: i64,
    /// Orders are created at random over this many days before now.
    pub days: i64,
    /// For PostgreSQL's `setseed`, between -1 and 1.
    pub seed: f64,
}

/// Writes the batch in one transaction (the statistics triggers run as for any order).
pub async fn seed_orders(database_url: &str, seed: &Seed) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(database_url).await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT setseed($1)")
        .bind(seed.seed)
        .execute(&mut *tx)
        .await?;
    let first_user: i64 = sqlx::query_scalar(
        "WITH added AS (
            INSERT INTO users (openid)
            SELECT 'seed-' || $1 || '-' || g FROM generate_series(0, $2 - 1) g
            RETURNING id
         ) SELECT min(id) FROM added",
    )
    .bind(seed.tag)
    .bind(seed.users)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO orders (order_number, user_id, openid, phone_number, product_operator,
                             recharge_type, product_code, product_name, price_mnt,
                             exchange_rate, amount_fen, payment_status, transaction_id,
                             paid_at, payment_recorded_at, closed_at, recharge_status,
                             recharged_at, created_at, updated_at)
         SELECT 'SD' || $1 || lpad(x.g::text, 10, '0'),
                $2 + x.u, 'seed-' || $1 || '-' || x.u,
                '8' || lpad((x.g % 10000000)::text, 7, '0'),
                'unitel', p.recharge_type, p.code, p.name, p.price, 440,
                round(p.price * 100 / 440.0)::bigint,
                ps.pay,
                CASE WHEN ps.pay = 'paid' THEN 'T' || $1 || x.g END,
                CASE WHEN ps.pay = 'paid' THEN x.created + interval '1 minute' END,
                CASE WHEN ps.pay = 'paid' THEN x.created + interval '1 minute' END,
                CASE WHEN ps.pay = 'closed' THEN x.created + interval '30 minutes' END,
                rs.recharge,
                CASE WHEN rs.recharge IN ('success', 'failed')
                     THEN x.created + interval '2 minutes' END,
                x.created, x.created
           FROM (SELECT g,
                        -- Squared: a few customers buy often, most rarely.
                        floor(random() * random() * $3)::bigint AS u,
                        now() - random() * $4 * interval '1 day' AS created,
                        floor(random() * 6)::int AS product,
                        random() AS r1, random() AS r2
                   FROM generate_series(1, $5) g) x
          CROSS JOIN LATERAL (SELECT CASE WHEN x.r1 < 0.82 THEN 'paid'
                                          WHEN x.r1 < 0.92 THEN 'closed'
                                          ELSE 'unpaid' END AS pay) ps
          CROSS JOIN LATERAL (SELECT CASE WHEN ps.pay <> 'paid' THEN 'pending'
                                          WHEN x.r2 < 0.90 THEN 'success'
                                          WHEN x.r2 < 0.95 THEN 'failed'
                                          WHEN x.r2 < 0.97 THEN 'unknown'
                                          WHEN x.r2 < 0.985 THEN 'processing'
                                          ELSE 'pending' END AS recharge) rs
          JOIN (VALUES (0, 'SD5000', 'Smart data 5000', 'data', 5000),
                       (1, 'SD10000', 'Smart data 10000', 'data', 10000),
                       (2, 'SDAY3000', 'Smart days 3000', 'data', 3000),
                       (3, 'ST2000', 'Smart talk 2000', 'voice', 2000),
                       (4, 'ST20000', 'Smart talk 20000', 'voice', 20000),
                       (5, 'POSTPAID', 'Postpaid bill', 'postpaid', 74220))
               AS p(i, code, name, recharge_type, price) ON p.i = x.product",
    )
    .bind(seed.tag)
    .bind(first_user)
    .bind(seed.users)
    .bind(seed.days as f64)
    .bind(seed.orders)
    .execute(&mut *tx)
    .await?;
    // Failed top-ups get a refund in every state, and a few credited ones were refunded
    // by hand. Open ones are never due for the refund sweep: this is history for the
    // statistics, not work for the system.
    sqlx::query(
        "INSERT INTO refunds (order_number, out_refund_no, amount_fen, reason, requested_by,
                              status, completed_at, next_check_at, created_at)
         SELECT order_number, 'RF' || order_number, amount_fen, 'seeded', 'admin:seed', s.status,
                CASE WHEN s.status IN ('success', 'failed') THEN created_at + interval '1 hour' END,
                'infinity', created_at + interval '3 minutes'
           FROM (SELECT order_number, amount_fen, created_at, recharge_status, random() AS r
                   FROM orders
                  WHERE order_number LIKE 'SD' || $1 || '%'
                    AND (recharge_status = 'failed' OR recharge_status = 'success')) o
          CROSS JOIN LATERAL (SELECT CASE WHEN o.r < 0.7 THEN 'success'
                                          WHEN o.r < 0.8 THEN 'failed'
                                          WHEN o.r < 0.9 THEN 'accepted'
                                          ELSE 'requested' END AS status) s
          WHERE o.recharge_status = 'failed' OR o.r < 0.01",
    )
    .bind(seed.tag)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}
