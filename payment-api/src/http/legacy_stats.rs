//! `GET /statistics`, `/statistics/users`, `/statistics/orders`, `/statistics/revenue`:
//! the replaced system's figures, in its shapes, for the tools that read them. Unlike there,
//! they need the admin token: any customer could read the business's revenue before.
//! `/admin/stats` is this project's fuller report.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};

use super::days::{china_day, china_midnight};
use super::envelope::{iso_millis, Envelope};
use super::error::ApiError;
use super::extractor::Admin;
use crate::context::ApiContext;
use crate::store::legacy_stats::{self, StatsFilter};

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/statistics", get(overview))
        .route("/statistics/users", get(users))
        .route("/statistics/orders", get(orders))
        .route("/statistics/revenue", get(revenue))
}

/// The replaced system's filters; any other parameter is refused, as there.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, non_snake_case)]
pub struct LegacyStatsQuery {
    /// First day (`YYYY-MM-DD`, China time, 2000-01-01 to 2100-12-31) of orders created /
    /// payments made.
    #[param(value_type = Option<String>, format = Date)]
    startDate: Option<String>,
    /// Last day, included.
    #[param(value_type = Option<String>, format = Date)]
    endDate: Option<String>,
    /// Only users of this app (and their orders). App ids are recorded only when they are
    /// printable ASCII of at most 128 characters, so no other value matches anyone.
    #[param(pattern = r"^[!-~]{1,128}$")]
    appid: Option<String>,
}

fn filter(query: &HashMap<String, String>) -> Result<StatsFilter, ApiError> {
    let mut unknown: Vec<String> = query
        .keys()
        .filter(|k| !["startDate", "endDate", "appid"].contains(&k.as_str()))
        .map(|k| format!("property {k} should not exist"))
        .collect();
    if !unknown.is_empty() {
        unknown.sort();
        return Err(ApiError::BadRequest(unknown.join(", ")));
    }
    let from = query
        .get("startDate")
        .map(|d| china_day(d, "开始日期"))
        .transpose()?
        .map(|(start, _)| start);
    let until = query
        .get("endDate")
        .map(|d| china_day(d, "结束日期"))
        .transpose()?
        .map(|(_, end)| end);
    let appid = query.get("appid").cloned();
    // As recorded from the gateway's headers; anything else matches no one (and PostgreSQL
    // could not compare text holding NUL).
    let recordable =
        |id: &String| (1..=128).contains(&id.len()) && id.chars().all(|c| c.is_ascii_graphic());
    if appid.as_ref().is_some_and(|id| !recordable(id)) {
        return Err(ApiError::BadRequest(
            "appid must be 1 to 128 printable ASCII characters".into(),
        ));
    }
    Ok(StatsFilter { from, until, appid })
}

/// Midnight of today and of the first of this month, China time.
fn today_and_month() -> (DateTime<Utc>, DateTime<Utc>) {
    let today = crate::stats::today();
    let month = today.with_day(1).unwrap_or(today);
    let start = |day: NaiveDate| china_midnight(day).unwrap_or_else(Utc::now);
    (start(today), start(month))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserFigures {
    total: i64,
    /// Users first seen today (China time).
    today_new: i64,
    /// Users per app (`unknown` when none was recorded); absent when `appid` is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    by_appid: Option<BTreeMap<String, i64>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderFigures {
    total: i64,
    /// Orders not paid (yet).
    pending: i64,
    paid: i64,
    /// Orders whose top-up succeeded.
    completed: i64,
    /// Orders created today (China time).
    today_orders: i64,
    by_operator: BTreeMap<String, i64>,
    by_recharge_type: BTreeMap<String, i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevenueFigures {
    /// Yuan paid, a decimal string (`"12.3"`).
    total_revenue: String,
    today_revenue: String,
    month_revenue: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    users: UserFigures,
    orders: OrderFigures,
    revenue: RevenueFigures,
    #[serde(serialize_with = "iso_millis")]
    generated_at: DateTime<Utc>,
}

async fn user_figures(db: &PgPool, filter: &StatsFilter) -> Result<UserFigures, sqlx::Error> {
    let (today, _) = today_and_month();
    let counts = legacy_stats::user_counts(db, filter, today).await?;
    let by_appid = match filter.appid {
        Some(_) => None,
        None => Some(
            legacy_stats::users_by_appid(db)
                .await?
                .into_iter()
                .collect(),
        ),
    };
    Ok(UserFigures {
        total: counts.total,
        today_new: counts.today,
        by_appid,
    })
}

async fn order_figures(db: &PgPool, filter: &StatsFilter) -> Result<OrderFigures, sqlx::Error> {
    let (today, _) = today_and_month();
    let rows = legacy_stats::order_counts(db, filter, today).await?;
    let mut figures = OrderFigures {
        total: 0,
        pending: 0,
        paid: 0,
        completed: 0,
        today_orders: 0,
        by_operator: BTreeMap::new(),
        by_recharge_type: BTreeMap::new(),
    };
    for row in rows {
        figures.total += row.total;
        figures.pending += row.pending;
        figures.paid += row.paid;
        figures.completed += row.completed;
        figures.today_orders += row.today;
        *figures.by_operator.entry(row.operator).or_default() += row.total;
        *figures
            .by_recharge_type
            .entry(row.recharge_type)
            .or_default() += row.total;
    }
    Ok(figures)
}

async fn revenue_figures(db: &PgPool, filter: &StatsFilter) -> Result<RevenueFigures, sqlx::Error> {
    let (today, month) = today_and_month();
    let sums = legacy_stats::revenue_sums(db, filter, today, month).await?;
    let yuan = |fen: i64| rust_decimal::Decimal::new(fen, 2).normalize().to_string();
    Ok(RevenueFigures {
        total_revenue: yuan(sums.total),
        today_revenue: yuan(sums.today),
        month_revenue: yuan(sums.month),
    })
}

/// Users, orders and revenue at once.
#[utoipa::path(get, path = "/statistics", tag = "admin", params(LegacyStatsQuery),
    security(("admin_token" = [])),
    responses((status = 200, body = Overview), (status = 401, description = "Missing or wrong admin token")))]
async fn overview(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Envelope<Overview>, ApiError> {
    let filter = filter(&query)?;
    Ok(Envelope(Overview {
        users: user_figures(&ctx.db, &filter).await?,
        orders: order_figures(&ctx.db, &filter).await?,
        revenue: revenue_figures(&ctx.db, &filter).await?,
        generated_at: Utc::now(),
    }))
}

/// Users: how many, new today, per app.
#[utoipa::path(get, path = "/statistics/users", tag = "admin", params(LegacyStatsQuery),
    security(("admin_token" = [])),
    responses((status = 200, body = UserFigures), (status = 401, description = "Missing or wrong admin token")))]
async fn users(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Envelope<UserFigures>, ApiError> {
    Ok(Envelope(user_figures(&ctx.db, &filter(&query)?).await?))
}

/// Orders: by payment and top-up state, operator and recharge type.
#[utoipa::path(get, path = "/statistics/orders", tag = "admin", params(LegacyStatsQuery),
    security(("admin_token" = [])),
    responses((status = 200, body = OrderFigures), (status = 401, description = "Missing or wrong admin token")))]
async fn orders(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Envelope<OrderFigures>, ApiError> {
    Ok(Envelope(order_figures(&ctx.db, &filter(&query)?).await?))
}

/// Yuan paid: in the range, today, this month.
#[utoipa::path(get, path = "/statistics/revenue", tag = "admin", params(LegacyStatsQuery),
    security(("admin_token" = [])),
    responses((status = 200, body = RevenueFigures), (status = 401, description = "Missing or wrong admin token")))]
async fn revenue(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Envelope<RevenueFigures>, ApiError> {
    Ok(Envelope(revenue_figures(&ctx.db, &filter(&query)?).await?))
}
