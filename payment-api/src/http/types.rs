//! Inputs and error mappings several routes share.

use std::ops::RangeInclusive;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use shared::order::{Msisdn, OrderNumber};
use shared::unitel::UnitelError;
use utoipa::IntoParams;

use super::error::ApiError;

/// An order number in a path.
#[derive(IntoParams)]
#[into_params(names("orderNumber"), parameter_in = Path)]
#[allow(dead_code)]
pub struct OrderNumberParam(
    #[param(
        pattern = r"^[0-9A-Za-z_|*-]{6,32}$",
        example = "ORD1795562423906XQ68VSFX"
    )]
    String,
);

pub fn parse_order_number(value: &str) -> Result<OrderNumber, ApiError> {
    OrderNumber::parse(value).map_err(|e| ApiError::BadRequest(format!("orderNumber: {e}")))
}

pub fn parse_msisdn(value: &str, field: &str) -> Result<Msisdn, ApiError> {
    Msisdn::parse(value).map_err(|e| ApiError::BadRequest(format!("{field}: {e}")))
}

/// The name of the person acting through an admin route, as they give it (default
/// `admin`), for the order's history ([`shared::history::Actor::Admin`]).
pub fn person(given: Option<&str>, field: &str) -> Result<String, ApiError> {
    let who = given
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .unwrap_or("admin");
    if who.chars().count() > 100 {
        return Err(ApiError::BadRequest(format!(
            "{field} must be at most 100 characters"
        )));
    }
    Ok(who.to_owned())
}

/// A required free-text field, trimmed, of at most `max_chars` characters.
pub fn required_text<'a>(
    text: &'a str,
    field: &str,
    max_chars: usize,
) -> Result<&'a str, ApiError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max_chars {
        return Err(ApiError::BadRequest(format!(
            "{field} must be 1 to {max_chars} characters"
        )));
    }
    Ok(text)
}

/// Unitel's refusal to look a number up is the customer's to know, in our words: its
/// own message, like its being down, is the operator's (logged).
pub fn unitel_error(error: UnitelError) -> ApiError {
    match error {
        UnitelError::Rejected { code, message } => {
            tracing::info!(%code, %message, "Unitel refused a lookup");
            ApiError::BadRequest("该号码无法办理此业务，请核对号码".into())
        }
        other => {
            tracing::warn!(error = %other, "Unitel unavailable");
            ApiError::Upstream("Unitel 暂时不可用，请稍后再试".into())
        }
    }
}

/// The years a caller may name a day of. The business began in the 2020s; a day outside
/// these is a typo or a probe, and inside them no day arithmetic comes near the edges of
/// chrono's or PostgreSQL's calendars.
pub const YEARS: RangeInclusive<i32> = 2000..=2100;

/// Why a day a caller named is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadDay {
    /// Not `YYYY-MM-DD`.
    Malformed,
    /// Outside [`YEARS`].
    OutOfRange,
}

/// A `YYYY-MM-DD` day within [`YEARS`].
pub fn parse_day(text: &str) -> Result<NaiveDate, BadDay> {
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| BadDay::Malformed)?;
    if YEARS.contains(&day.year()) {
        Ok(day)
    } else {
        Err(BadDay::OutOfRange)
    }
}

/// The first day of [`YEARS`].
pub fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(*YEARS.start(), 1, 1).unwrap_or(NaiveDate::MIN)
}

/// The last day of [`YEARS`].
pub fn last_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(*YEARS.end(), 12, 31).unwrap_or(NaiveDate::MAX)
}

/// Midnight starting `day` in China (UTC+8), as an instant; `None` only at the very edges
/// of chrono's calendar, which a day from [`parse_day`] is far from.
pub fn china_midnight(day: NaiveDate) -> Option<DateTime<Utc>> {
    FixedOffset::east_opt(8 * 3600)?
        .from_local_datetime(&day.and_time(NaiveTime::MIN))
        .single()
        .map(|start| start.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_outside_the_years_are_refused_not_computed() {
        for far in [
            "-262143-01-01",
            "+262143-12-31",
            "262143-12-31",
            "0000-01-01",
            "1999-12-31",
            "2101-01-01",
            "9999-12-31",
        ] {
            assert!(parse_day(far).is_err(), "{far}");
        }
        assert_eq!(parse_day("2026-02-30"), Err(BadDay::Malformed));
        assert_eq!(parse_day("2000-01-01"), Ok(first_day()));
        assert_eq!(parse_day("2100-12-31"), Ok(last_day()));
        assert_eq!(
            china_midnight(last_day()).unwrap().to_rfc3339(),
            "2100-12-30T16:00:00+00:00"
        );
    }
}
