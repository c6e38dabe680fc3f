//! Identifiers and timestamps shaped like the real platforms' ones, so that code which
//! stores or parses them meets realistic lengths and alphabets.

use chrono::{DateTime, FixedOffset, Utc};
use rand::Rng;

/// Both China (WeChat Pay's `time_end`) and Mongolia (Unitel receipts) are on UTC+8.
pub(crate) fn utc_plus_8(at: DateTime<Utc>) -> DateTime<FixedOffset> {
    let offset = FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    at.with_timezone(&offset)
}

/// WeChat Pay's compact timestamp, `yyyyMMddHHmmss` in UTC+8.
pub(crate) fn compact_time(at: DateTime<Utc>) -> String {
    utc_plus_8(at).format("%Y%m%d%H%M%S").to_string()
}

/// `yyyy-MM-dd HH:mm:ss` in UTC+8 (refund success times, receipt dates).
pub(crate) fn readable_time(at: DateTime<Utc>) -> String {
    utc_plus_8(at).format("%Y-%m-%d %H:%M:%S").to_string()
}

pub(crate) fn digits(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

pub(crate) fn hex(len: usize, upper: bool) -> String {
    const LOWER: &[u8] = b"0123456789abcdef";
    const UPPER: &[u8] = b"0123456789ABCDEF";
    let alphabet = if upper { UPPER } else { LOWER };
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..16)]))
        .collect()
}

pub(crate) fn alphanumeric(len: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// 28 digits like `4200004561202203217657282768`: a prefix, the payment date, a tail.
pub(crate) fn transaction_id(at: DateTime<Utc>) -> String {
    let date = utc_plus_8(at).format("%Y%m%d");
    format!("4200{}{date}{}", digits(6), digits(10))
}

/// `wx` + `yyyyMMddHHmmss` + 20 characters, as WeChat Pay's prepay ids look.
pub(crate) fn prepay_id(at: DateTime<Utc>) -> String {
    format!("wx{}{}", compact_time(at), hex(20, false))
}

/// 29 digits like `50000408942018060806917436785`.
pub(crate) fn refund_id() -> String {
    format!("50{}", digits(27))
}

/// The platform's relay id, sent back as `x-openapi-seqid`.
pub(crate) fn openapi_seq_id() -> String {
    hex(32, false)
}

/// A Unitel e-receipt lottery number, e.g. `KX 74016742`.
pub(crate) fn lottery() -> String {
    let mut rng = rand::rng();
    let letter = |rng: &mut rand::rngs::ThreadRng| char::from(b'A' + rng.random_range(0..26u8));
    format!("{}{} {}", letter(&mut rng), letter(&mut rng), digits(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_the_real_ones() {
        let now = Utc::now();
        let transaction = transaction_id(now);
        assert_eq!(transaction.len(), 28);
        assert!(transaction.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(prepay_id(now).len(), 36);
        assert_eq!(refund_id().len(), 29);
        assert_eq!(compact_time(now).len(), 14);
        let lottery = lottery();
        assert_eq!(lottery.len(), 11);
        assert_eq!(&lottery[2..3], " ");
    }
}
