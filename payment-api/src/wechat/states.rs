//! WeChat Pay's trade and refund states, and its clock, turned into ours.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use shared::order::{PaymentStatus, RefundStatus};

/// `trade_state` of `queryorder`. Only `SUCCESS` is paid. `CLOSED`, `REVOKED`, and
/// `REFUND` (paid, then given back: nothing is left to fulfil) are closed. Everything
/// else, including a state we do not know, leaves the order unpaid.
pub(super) fn payment_status(trade_state: &str) -> PaymentStatus {
    match trade_state {
        "SUCCESS" => PaymentStatus::Paid,
        "CLOSED" | "REVOKED" | "REFUND" => PaymentStatus::Closed,
        _ => PaymentStatus::Unpaid,
    }
}

/// `refund_status_N` of `queryrefund`. An unknown word is not a verdict: the refund stays
/// accepted and is asked about again.
pub(super) fn refund_status(refund_status: &str) -> RefundStatus {
    match refund_status {
        "SUCCESS" => RefundStatus::Success,
        "REFUNDCLOSE" | "CHANGE" => RefundStatus::Failed,
        _ => RefundStatus::Accepted,
    }
}

/// WeChat Pay's `yyyyMMddHHmmss` times (`time_end`, `timeEnd`), which are China time.
pub fn china_time(text: &str) -> Option<DateTime<Utc>> {
    china_time_as(text.trim(), "%Y%m%d%H%M%S")
}

/// A China time written as `format` says (the daily bill writes `yyyy-MM-dd HH:mm:ss`).
pub(super) fn china_time_as(text: &str, format: &str) -> Option<DateTime<Utc>> {
    let local = NaiveDateTime::parse_from_str(text, format).ok()?;
    let china = FixedOffset::east_opt(8 * 3600)?;
    Some(
        china
            .from_local_datetime(&local)
            .single()?
            .with_timezone(&Utc),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trade_states_map_to_payment_statuses() {
        assert_eq!(payment_status("SUCCESS"), PaymentStatus::Paid);
        assert_eq!(payment_status("REFUND"), PaymentStatus::Closed);
        assert_eq!(payment_status("CLOSED"), PaymentStatus::Closed);
        assert_eq!(payment_status("REVOKED"), PaymentStatus::Closed);
        for pending in [
            "NOTPAY",
            "USERPAYING",
            "ACCEPT",
            "PAYERROR",
            "SOMETHING_NEW",
            "",
        ] {
            assert_eq!(payment_status(pending), PaymentStatus::Unpaid, "{pending}");
        }
    }

    #[test]
    fn refund_states_map_to_refund_statuses() {
        assert_eq!(refund_status("SUCCESS"), RefundStatus::Success);
        assert_eq!(refund_status("REFUNDCLOSE"), RefundStatus::Failed);
        assert_eq!(refund_status("CHANGE"), RefundStatus::Failed);
        assert_eq!(refund_status("PROCESSING"), RefundStatus::Accepted);
        assert_eq!(refund_status("NEW_WORD"), RefundStatus::Accepted);
    }

    #[test]
    fn time_end_is_china_time() {
        let paid = china_time("20220321132007").unwrap();
        assert_eq!(paid.to_rfc3339(), "2022-03-21T05:20:07+00:00");
        assert!(china_time("2022-03-21").is_none());
        assert!(china_time("20221399000000").is_none());
    }
}
