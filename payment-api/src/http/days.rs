//! Days a caller names (`YYYY-MM-DD`, China time), within the years the business can have.

use std::ops::RangeInclusive;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};

use super::error::ApiError;

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

/// The China day `value` (`YYYY-MM-DD`, within [`YEARS`]) names: the instants it starts
/// and ends at. `field` names it in the replaced system's words (`开始日期`).
pub fn china_day(value: &str, field: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let out_of_range = || {
        ApiError::BadRequest(format!(
            "{field}须在 {} 至 {} 之间",
            first_day(),
            last_day()
        ))
    };
    let day = parse_day(value).map_err(|why| match why {
        BadDay::Malformed => ApiError::BadRequest(format!("{field}格式不正确，应为 YYYY-MM-DD")),
        BadDay::OutOfRange => out_of_range(),
    })?;
    let start = china_midnight(day).ok_or_else(out_of_range)?;
    let end = day
        .succ_opt()
        .and_then(china_midnight)
        .ok_or_else(out_of_range)?;
    Ok((start, end))
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
