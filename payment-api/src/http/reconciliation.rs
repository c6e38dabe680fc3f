//! The daily reconciliation with WeChat Pay's bill, for a person: each day's standing and
//! differences, re-running a day, and settling a difference with a note.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::Router;
use chrono::{Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::admin_input::PersonsNote;
use super::envelope::Envelope;
use super::error::ApiError;
use super::extractor::Admin;
use super::json::ApiJson;
use crate::context::ApiContext;
use crate::reconciliation::{self, china_today};
use crate::store::reconciliation::{self as store, DayReport, DaySummary};

/// Days listed when no day is asked for.
const RECENT_DAYS: i64 = 31;
/// WeChat serves the bills of about three months.
const OLDEST_DAY: u64 = 92;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/admin/reconciliation", get(read))
        .route("/admin/reconciliation/run", post(run))
        .route(
            "/admin/reconciliation/differences/{id}/resolve",
            post(resolve),
        )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DayQuery {
    /// A China day, `YYYY-MM-DD`, within the last three months.
    #[param(example = "2026-12-03", format = Date)]
    date: Option<String>,
}

fn parse_day(text: &str) -> Result<NaiveDate, ApiError> {
    let day = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| ApiError::BadRequest("date must be a date as YYYY-MM-DD".into()))?;
    let today = china_today(Utc::now());
    let oldest = today
        .checked_sub_days(Days::new(OLDEST_DAY))
        .unwrap_or(NaiveDate::MIN);
    if day > today || day < oldest {
        return Err(ApiError::BadRequest(format!(
            "date must be between {oldest} and {today} (WeChat serves the last three months)"
        )));
    }
    Ok(day)
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationView {
    /// The latest days, newest first.
    days: Vec<DaySummary>,
    /// The day asked for, in full (`null` if it was never reconciled).
    day: Option<DayReport>,
}

/// Where each day stands against WeChat Pay's bill; with `date`, that day in full: both
/// sides' totals and every difference, with who settled it.
#[utoipa::path(get, path = "/admin/reconciliation", tag = "admin", params(DayQuery),
    security(("admin_token" = [])),
    responses((status = 200, body = ReconciliationView), (status = 400, description = "Invalid date"),
              (status = 401, description = "Missing or wrong admin token")))]
async fn read(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    Query(query): Query<DayQuery>,
) -> Result<Envelope<ReconciliationView>, ApiError> {
    let day = match query.date.as_deref() {
        Some(date) => store::day(&ctx.db, parse_day(date)?).await?,
        None => None,
    };
    Ok(Envelope(ReconciliationView {
        days: store::recent_days(&ctx.db, RECENT_DAYS).await?,
        day,
    }))
}

/// Reconciles a day now (again): fetches its bill, matches it and records the result.
/// Nothing already settled changes. A bill WeChat has not generated yet leaves the day
/// `waiting`.
#[utoipa::path(post, path = "/admin/reconciliation/run", tag = "admin", params(DayQuery),
    security(("admin_token" = [])),
    responses((status = 200, body = DayReport), (status = 400, description = "Invalid or missing date"),
              (status = 401, description = "Missing or wrong admin token")))]
async fn run(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    Query(query): Query<DayQuery>,
) -> Result<Envelope<DayReport>, ApiError> {
    let date = query
        .date
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("date is required".into()))?;
    let day = parse_day(date)?;
    reconciliation::reconcile_now(&ctx.reconciliation, day)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let report = store::day(&ctx.db, day)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("day {day} not recorded")))?;
    Ok(Envelope(report))
}

/// A person settles an open difference, with a note; the day shows who and why.
#[utoipa::path(post, path = "/admin/reconciliation/differences/{id}/resolve", tag = "admin",
    params(("id" = i64, Path, description = "The difference's id")), request_body = PersonsNote,
    security(("admin_token" = [])),
    responses((status = 200, body = DayReport), (status = 400, description = "Invalid note"),
              (status = 401, description = "Missing or wrong admin token"),
              (status = 404, description = "No such open difference")))]
async fn resolve(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    Path(id): Path<i64>,
    ApiJson(request): ApiJson<PersonsNote>,
) -> Result<Envelope<DayReport>, ApiError> {
    let (note, name) = request.read()?;
    let day = reconciliation::resolve_difference(&ctx.db, id, &format!("admin:{name}"), note)
        .await?
        .ok_or_else(|| ApiError::NotFound("No such open difference".into()))?;
    tracing::info!(difference = id, %day, by = %name, "reconciliation difference resolved by a person");
    let report = store::day(&ctx.db, day)
        .await?
        .ok_or_else(|| ApiError::NotFound("No such day".into()))?;
    Ok(Envelope(report))
}
