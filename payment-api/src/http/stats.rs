//! `GET /admin/stats`: the operator's figures for a range of days.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use chrono::{Days, NaiveDate};
use serde::Deserialize;
use utoipa::IntoParams;

use super::days::{first_day, last_day, parse_day as day_within_years, BadDay};
use super::envelope::Envelope;
use super::error::ApiError;
use super::extractor::Admin;
use crate::context::ApiContext;
use crate::stats::{self, Stats};

/// Longest range one request may ask for.
const MAX_DAYS: i64 = 366;
/// The range when none is given: the last 30 days, today included.
const DEFAULT_DAYS: u64 = 30;

pub fn router() -> Router<ApiContext> {
    Router::new().route("/admin/stats", get(statistics))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// First day, `YYYY-MM-DD` in Asia/Shanghai, 2000-01-01 to 2100-12-31 (default: 29
    /// days before `to`, not before 2000-01-01).
    #[param(example = "2026-11-01", format = Date)]
    from: Option<String>,
    /// Last day, included, `YYYY-MM-DD` in Asia/Shanghai, 2000-01-01 to 2100-12-31
    /// (default: today).
    #[param(example = "2026-11-30", format = Date)]
    to: Option<String>,
}

fn parse_day(text: &str, field: &str) -> Result<NaiveDate, ApiError> {
    day_within_years(text.trim()).map_err(|why| {
        ApiError::BadRequest(match why {
            BadDay::Malformed => format!("{field} must be a date as YYYY-MM-DD"),
            BadDay::OutOfRange => {
                format!(
                    "{field} must be a day from {} to {}",
                    first_day(),
                    last_day()
                )
            }
        })
    })
}

/// The days asked for, checked: `from` not after `to`, at most [`MAX_DAYS`] of them, all
/// within the years a caller may name.
fn range(query: &StatsQuery) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let to = match query.to.as_deref() {
        Some(to) => parse_day(to, "to")?,
        None => stats::today(),
    };
    let from = match query.from.as_deref() {
        Some(from) => parse_day(from, "from")?,
        // The default range does not reach before the first day anyone may ask about.
        None => to
            .checked_sub_days(Days::new(DEFAULT_DAYS - 1))
            .map_or(first_day(), |from| from.max(first_day())),
    };
    if from > to {
        return Err(ApiError::BadRequest("from must not be after to".into()));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(ApiError::BadRequest(format!(
            "a range covers at most {MAX_DAYS} days"
        )));
    }
    Ok((from, to))
}

/// Orders, payments, top-ups, refunds and customers for a range of days (Asia/Shanghai):
/// totals, per day, per hour of day, per product and per recharge type. Every order
/// counts in the hour it was created. Exact as of the request: changes not yet in the
/// roll-ups are folded in first.
#[utoipa::path(get, path = "/admin/stats", tag = "admin", params(StatsQuery),
    security(("admin_token" = [])),
    responses((status = 200, body = Stats), (status = 400, description = "Invalid range"),
              (status = 401, description = "Missing or wrong admin token")))]
async fn statistics(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    Query(query): Query<StatsQuery>,
) -> Result<Envelope<Stats>, ApiError> {
    let (from, to) = range(&query)?;
    stats::refresh(&ctx.db).await?;
    Ok(Envelope(stats::read(&ctx.db, from, to).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(from: Option<&str>, to: Option<&str>) -> StatsQuery {
        StatsQuery {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
        }
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn the_default_range_is_thirty_days_ending_on_the_given_day() {
        assert_eq!(
            range(&query(None, Some("2026-11-30"))).unwrap(),
            (day("2026-11-01"), day("2026-11-30"))
        );
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert!(range(&query(Some("2026-11-31"), None)).is_err());
        assert!(range(&query(Some("24.11.2026"), None)).is_err());
        assert!(range(&query(Some("2026-11-02"), Some("2026-11-01"))).is_err());
        // 367 days, then 366.
        assert!(range(&query(Some("2025-11-28"), Some("2026-11-29"))).is_err());
        assert!(range(&query(Some("2025-11-29"), Some("2026-11-29"))).is_ok());
        for far in ["-262143-01-01", "+262143-12-31", "1999-12-31", "2101-01-01"] {
            assert!(
                range(&query(Some(far), Some("2026-11-29"))).is_err(),
                "{far}"
            );
            assert!(range(&query(None, Some(far))).is_err(), "{far}");
            assert!(range(&query(Some(far), Some(far))).is_err(), "{far}");
        }
    }

    #[test]
    fn the_default_range_starts_no_earlier_than_the_first_day() {
        assert_eq!(
            range(&query(None, Some("2000-01-05"))).unwrap(),
            (day("2000-01-01"), day("2000-01-05"))
        );
    }
}
