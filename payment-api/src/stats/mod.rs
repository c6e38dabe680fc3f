//! Statistics for the operator: roll-ups kept fresh from markers the database writes with
//! every status change ([`refresh`]), and the figures for a range of days read from them
//! ([`report`]).

pub mod refresh;
pub mod report;

use chrono::{FixedOffset, NaiveDate, Utc};

pub use refresh::{refresh, Refreshed, Refresher};
pub use report::{read, Stats};

/// Where the customers are. China keeps UTC+8 all year.
pub const TIME_ZONE: &str = "Asia/Shanghai";

/// Today's date in [`TIME_ZONE`].
pub fn today() -> NaiveDate {
    let shanghai = FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    Utc::now().with_timezone(&shanghai).date_naive()
}
