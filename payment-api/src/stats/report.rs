//! The figures for a range of days, read from the roll-ups in two statements.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveTime};
use rust_decimal::Decimal;
use serde::Serialize;
use shared::money::Fen;
use sqlx::PgPool;
use utoipa::ToSchema;

/// Counts and sums for a set of orders (all of a range, a day, an hour of day, a product).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub orders_created: i64,
    pub orders_paid: i64,
    /// Paid orders over orders created, to four decimals; null without orders.
    #[schema(value_type = Option<String>, example = "0.9312")]
    pub payment_success_rate: Option<Decimal>,
    /// What paid orders cost, in fen and in yuan.
    pub paid_fen: i64,
    #[schema(value_type = String, example = "1136.00")]
    pub paid_yuan: Decimal,
    /// What paid orders bought, in tugrik.
    pub paid_mnt: i64,
    pub recharge_success: i64,
    pub recharge_failed: i64,
    pub recharge_unknown: i64,
    /// Paid orders not yet credited or failed.
    pub recharge_pending: i64,
    /// Tugrik credited to numbers.
    pub credited_mnt: i64,
    /// Refunds asked of WeChat and not settled yet.
    pub refunds_pending: i64,
    pub refunds_succeeded: i64,
    pub refunds_failed: i64,
    pub refunded_fen: i64,
    #[schema(value_type = String, example = "11.36")]
    pub refunded_yuan: Decimal,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayFigures {
    #[schema(value_type = String, format = Date, example = "2026-11-24")]
    pub day: NaiveDate,
    #[serde(flatten)]
    pub figures: Figures,
    /// Customers whose first paid order is that day.
    pub new_customers: i64,
    /// Customers paying that day who had paid on an earlier day.
    pub returning_customers: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HourFigures {
    /// 0 to 23, Asia/Shanghai.
    pub hour: i32,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductFigures {
    pub product_code: String,
    pub product_name: String,
    /// `voice`, `data` or `postpaid`.
    pub recharge_type: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RechargeTypeFigures {
    pub recharge_type: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Users with a paid order in the range, each counted once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Customers {
    /// Their first paid order ever is in the range.
    pub new: i64,
    /// They had paid before the range.
    pub returning: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    #[schema(value_type = String, format = Date)]
    pub from: NaiveDate,
    #[schema(value_type = String, format = Date)]
    pub to: NaiveDate,
    /// Days and hours are in this zone; an order counts in the hour it was created.
    pub time_zone: &'static str,
    pub totals: Figures,
    pub customers: Customers,
    /// Every day of the range, oldest first, with zeros where nothing happened.
    pub per_day: Vec<DayFigures>,
    /// All 24 hours of the day.
    pub per_hour_of_day: Vec<HourFigures>,
    /// Products with orders in the range, most orders first.
    pub per_product: Vec<ProductFigures>,
    pub per_recharge_type: Vec<RechargeTypeFigures>,
}

/// One row of a grouping set; which one is told by `grouping`, PostgreSQL's bit mask of
/// the columns rolled up (source, day, hour of day, product_code, recharge_type, in that
/// order).
struct Row {
    grouping: i32,
    /// 0: from the daily roll-up; 1: from the hourly one.
    source: i32,
    day: Option<NaiveDate>,
    hour_of_day: Option<i32>,
    product_code: Option<String>,
    recharge_type: Option<String>,
    product_name: Option<String>,
    created: i64,
    paid: i64,
    paid_fen: i64,
    paid_mnt: i64,
    success: i64,
    failed: i64,
    unknown: i64,
    pending: i64,
    credited_mnt: i64,
    refunds_pending: i64,
    refunds_succeeded: i64,
    refunds_failed: i64,
    refunded_fen: i64,
}

// Every grouping set keeps `source`; the mask names what else is rolled up. Hours of the
// day come from the hourly roll-up, everything else from the daily one.
const DAILY: i32 = 0;
const HOURLY: i32 = 1;
const TOTAL: i32 = 0b01111;
const BY_DAY: i32 = 0b00111;
const BY_HOUR: i32 = 0b01011;
const BY_PRODUCT: i32 = 0b01100;
const BY_TYPE: i32 = 0b01110;

impl Row {
    fn figures(&self) -> Figures {
        let rate = (self.created > 0).then(|| {
            (Decimal::from(self.paid) / Decimal::from(self.created))
                .round_dp_with_strategy(4, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
                .normalize()
        });
        Figures {
            orders_created: self.created,
            orders_paid: self.paid,
            payment_success_rate: rate,
            paid_fen: self.paid_fen,
            paid_yuan: yuan(self.paid_fen),
            paid_mnt: self.paid_mnt,
            recharge_success: self.success,
            recharge_failed: self.failed,
            recharge_unknown: self.unknown,
            recharge_pending: self.pending,
            credited_mnt: self.credited_mnt,
            refunds_pending: self.refunds_pending,
            refunds_succeeded: self.refunds_succeeded,
            refunds_failed: self.refunds_failed,
            refunded_fen: self.refunded_fen,
            refunded_yuan: yuan(self.refunded_fen),
        }
    }
}

fn yuan(fen: i64) -> Decimal {
    Fen::new(fen).map(Fen::yuan).unwrap_or_default()
}

fn empty() -> Figures {
    Figures {
        paid_yuan: yuan(0),
        refunded_yuan: yuan(0),
        ..Figures::default()
    }
}

/// The figures for the days `from..=to` (Asia/Shanghai), as the roll-ups hold them.
pub async fn read(db: &PgPool, from: NaiveDate, to: NaiveDate) -> Result<Stats, sqlx::Error> {
    let start = from.and_time(NaiveTime::MIN);
    // The last day chrono knows has no day after it; callers bound their days long before.
    let end = to.succ_opt().unwrap_or(to).and_time(NaiveTime::MIN);
    // Totals, days, products and types from the daily roll-up; hours of the day from the
    // hourly one.
    let rows = sqlx::query_as!(
        Row,
        r#"WITH facts AS (
            SELECT 0 AS source, day, NULL::int4 AS hour_of_day, product_code, recharge_type,
                   product_name, created, paid, paid_fen, paid_mnt, success, failed, unknown,
                   pending, credited_mnt, refunds_pending, refunds_succeeded, refunds_failed,
                   refunded_fen
              FROM stats_daily WHERE day >= $1 AND day <= $2
            UNION ALL
            SELECT 1, NULL, extract(hour FROM hour)::int4, NULL, NULL, NULL, created, paid,
                   paid_fen, paid_mnt, success, failed, unknown, pending, credited_mnt,
                   refunds_pending, refunds_succeeded, refunds_failed, refunded_fen
              FROM stats_hourly WHERE hour >= $3 AND hour < $4
         )
         SELECT GROUPING(source, day, hour_of_day, product_code, recharge_type) AS "grouping!",
                source AS "source!", day, hour_of_day, product_code, recharge_type,
                max(product_name) AS product_name,
                COALESCE(sum(created), 0)::int8 AS "created!",
                COALESCE(sum(paid), 0)::int8 AS "paid!",
                COALESCE(sum(paid_fen), 0)::int8 AS "paid_fen!",
                COALESCE(sum(paid_mnt), 0)::int8 AS "paid_mnt!",
                COALESCE(sum(success), 0)::int8 AS "success!",
                COALESCE(sum(failed), 0)::int8 AS "failed!",
                COALESCE(sum(unknown), 0)::int8 AS "unknown!",
                COALESCE(sum(pending), 0)::int8 AS "pending!",
                COALESCE(sum(credited_mnt), 0)::int8 AS "credited_mnt!",
                COALESCE(sum(refunds_pending), 0)::int8 AS "refunds_pending!",
                COALESCE(sum(refunds_succeeded), 0)::int8 AS "refunds_succeeded!",
                COALESCE(sum(refunds_failed), 0)::int8 AS "refunds_failed!",
                COALESCE(sum(refunded_fen), 0)::int8 AS "refunded_fen!"
           FROM facts
          GROUP BY GROUPING SETS ((source), (source, day), (source, hour_of_day),
                                  (source, product_code, recharge_type), (source, recharge_type))"#,
        from,
        to,
        start,
        end,
    )
    .fetch_all(db)
    .await?;

    let customer_rows = sqlx::query!(
        r#"SELECT day,
                  COALESCE(sum(customers) FILTER (WHERE prev_day = '-infinity'), 0)::int8 AS "new!",
                  COALESCE(sum(customers) FILTER (WHERE prev_day <> '-infinity'), 0)::int8
                      AS "returning_that_day!",
                  COALESCE(sum(customers) FILTER (WHERE prev_day <> '-infinity' AND prev_day < $1), 0)::int8
                      AS "returning_to_range!"
             FROM customer_day_counts
            WHERE day >= $1 AND day <= $2
            GROUP BY day"#,
        from,
        to,
    )
    .fetch_all(db)
    .await?;

    let mut totals = empty();
    let mut by_day = BTreeMap::new();
    let mut by_hour = BTreeMap::new();
    let mut per_product = Vec::new();
    let mut per_recharge_type = Vec::new();
    for row in rows {
        match (row.source, row.grouping) {
            (DAILY, TOTAL) => totals = row.figures(),
            (DAILY, BY_DAY) => {
                if let Some(day) = row.day {
                    by_day.insert(day, row.figures());
                }
            }
            (HOURLY, BY_HOUR) => {
                if let Some(hour) = row.hour_of_day {
                    by_hour.insert(hour, row.figures());
                }
            }
            (DAILY, BY_PRODUCT) => per_product.push(ProductFigures {
                figures: row.figures(),
                product_code: row.product_code.unwrap_or_default(),
                product_name: row.product_name.unwrap_or_default(),
                recharge_type: row.recharge_type.unwrap_or_default(),
            }),
            (DAILY, BY_TYPE) => per_recharge_type.push(RechargeTypeFigures {
                figures: row.figures(),
                recharge_type: row.recharge_type.unwrap_or_default(),
            }),
            // The other source's view of a grouping: not read.
            _ => {}
        }
    }
    per_product.sort_by(|a, b| {
        b.figures
            .orders_created
            .cmp(&a.figures.orders_created)
            .then_with(|| a.product_code.cmp(&b.product_code))
            .then_with(|| a.recharge_type.cmp(&b.recharge_type))
    });
    per_recharge_type.sort_by(|a, b| a.recharge_type.cmp(&b.recharge_type));

    let mut customers = Customers::default();
    let mut customers_by_day = BTreeMap::new();
    for row in customer_rows {
        customers.new += row.new;
        customers.returning += row.returning_to_range;
        customers_by_day.insert(row.day, (row.new, row.returning_that_day));
    }

    let per_day = from
        .iter_days()
        .take_while(|day| *day <= to)
        .map(|day| {
            let (new_customers, returning_customers) =
                customers_by_day.get(&day).copied().unwrap_or_default();
            DayFigures {
                day,
                figures: by_day.remove(&day).unwrap_or_else(empty),
                new_customers,
                returning_customers,
            }
        })
        .collect();
    let per_hour_of_day = (0..24)
        .map(|hour| HourFigures {
            hour,
            figures: by_hour.remove(&hour).unwrap_or_else(empty),
        })
        .collect();

    Ok(Stats {
        from,
        to,
        time_zone: super::TIME_ZONE,
        totals,
        customers,
        per_day,
        per_hour_of_day,
        per_product,
        per_recharge_type,
    })
}
