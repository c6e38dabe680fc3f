//! An order's history (`order_events`): what happened to it, and who made it happen. Only
//! the transitions in [`crate::lifecycle`] write it, each its own event, so the history is
//! exactly the list of transitions the order went through.

use std::fmt;

use crate::order::{InvalidValue, OpenId};
use crate::text_enum::text_enum;

text_enum!(
    /// One line of an order's history.
    OrderEvent, "order event" {
        /// The customer placed it.
        Created => "created",
        /// WeChat took the money (callback or query).
        Paid => "paid",
        /// WeChat took the money for an order closed before: nothing will be fulfilled,
        /// the money is to be refunded.
        PaidAfterClose => "paid_after_close",
        /// It can no longer be paid (window over, or the customer cancelled).
        Closed => "closed",
        /// A callback or query disagreed with the order; see `payment_anomalies`.
        Anomaly => "anomaly",
        /// A worker took it to send the top-up.
        Claimed => "claimed",
        /// Given back unsent, for a later attempt.
        Released => "released",
        /// Put back on the queue: paid, still pending, its message gone.
        Requeued => "requeued",
        /// The number was credited.
        Success => "success",
        /// Nothing was credited, and Unitel or a person says so.
        Failed => "failed",
        /// The top-up may or may not have been credited: never sent again automatically.
        Unknown => "unknown",
        RefundRequested => "refund_requested",
        RefundAccepted => "refund_accepted",
        RefundSucceeded => "refund_success",
        RefundFailed => "refund_failed",
        /// A person sent a failed refund to WeChat again.
        RefundRetried => "refund_retried",
        /// Brought over from the replaced system (`payment-api import-legacy`), with the
        /// row as it was there.
        Imported => "imported",
    }
);

text_enum!(
    /// Why a payment report (callback or query) was not taken as a payment.
    AnomalyKind, "anomaly" {
        /// A callback without the gateway's `X-WX-SOURCE` (production).
        MissingSource => "missing_source",
        InvalidOrderNumber => "invalid_order_number",
        /// The path's order number differs from `outTradeNo`.
        OrderNumberMismatch => "order_number_mismatch",
        /// `returnCode`/`resultCode` not SUCCESS.
        NotSuccess => "not_success",
        MerchantMismatch => "merchant_mismatch",
        AttachMismatch => "attach_mismatch",
        MissingTransactionId => "missing_transaction_id",
        AmountMismatch => "amount_mismatch",
        UnknownOrder => "unknown_order",
        /// `queryorder` did not confirm the callback's payment.
        NotPaidAtWechat => "not_paid_at_wechat",
        /// `queryorder` says paid, for another amount.
        QueryAmountMismatch => "query_amount_mismatch",
        /// Paid before with another transaction: the customer may have paid twice.
        SecondTransaction => "second_transaction",
        /// Paid after the order was closed: money taken, nothing to fulfil.
        PaidAfterClose => "paid_after_close",
        /// The transaction already paid another order.
        TransactionReused => "transaction_reused",
        RefundMerchantMismatch => "refund_merchant_mismatch",
        RefundOrderMismatch => "refund_order_mismatch",
        RefundMissingSource => "refund_missing_source",
        /// WeChat reports a refund this system never asked for.
        RefundUnknown => "refund_unknown",
        /// WeChat's daily bill shows a payment for an order number we never had.
        BillUnknownOrder => "bill_unknown_order",
        /// Paid here, absent from WeChat's daily bill.
        BillMissing => "bill_missing",
        /// WeChat's daily bill shows the payment differently (amount, merchant,
        /// transaction).
        BillMismatch => "bill_mismatch",
        /// A refund we recorded as taken that WeChat's bill and `queryrefund` do not show.
        BillRefundMissing => "bill_refund_missing",
        /// WeChat's daily bill shows a refund we never asked for (made by hand in the
        /// merchant platform, or by someone else).
        BillRefundUnknown => "bill_refund_unknown",
        /// Unitel answered a top-up after the order was no longer its worker's to record
        /// (settled or taken over meanwhile): what Unitel said is kept here for a person.
        LateTopUpOutcome => "late_top_up_outcome",
        /// An APIv3 notification that did not verify: a byte changed, a stale timestamp, a
        /// key we do not hold, a resource that does not decrypt. The detail says which.
        NotificationUnverified => "notification_unverified",
        /// An APIv3 notification whose nonce was already taken: a replay.
        NotificationReplayed => "notification_replayed",
    }
);

impl AnomalyKind {
    /// The customer's money was taken and the order will not be fulfilled: a person must
    /// give it back. Recorded only once `queryorder` confirmed the payment.
    pub fn money_taken_unfulfilled(self) -> bool {
        matches!(
            self,
            AnomalyKind::SecondTransaction | AnomalyKind::PaidAfterClose
        )
    }

    /// WeChat's own answer (`queryorder`) or our own worker showed it, so it may mark the
    /// order; every other kind comes from a request anyone could have sent.
    pub fn verified(self) -> bool {
        self.money_taken_unfulfilled()
            || matches!(
                self,
                AnomalyKind::QueryAmountMismatch | AnomalyKind::LateTopUpOutcome
            )
            || self.from_bill()
    }

    /// Found by matching WeChat's daily bill with our books: the bill is WeChat's own
    /// record, fetched by us; a person must look at the difference.
    pub fn from_bill(self) -> bool {
        matches!(
            self,
            AnomalyKind::BillUnknownOrder
                | AnomalyKind::BillMissing
                | AnomalyKind::BillMismatch
                | AnomalyKind::BillRefundMissing
                | AnomalyKind::BillRefundUnknown
        )
    }
}

/// Who made a transition, as the history records it (`kind` or `kind:name`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The customer, by openid.
    User(OpenId),
    /// WeChat Pay's payment-result callback.
    WechatCallback,
    /// WeChat Pay's refund-result callback.
    WechatRefundCallback,
    /// Our own `queryorder` (on read, on cancel, by the payment watch).
    WechatQuery,
    /// payment-api's watch over unpaid orders (lost callbacks, expired orders).
    PaymentWatch,
    /// payment-api's refund sweep, which sends refunds and settles them by `queryrefund`.
    RefundSweep,
    /// The automatic refund of a failed top-up.
    AutoRefund,
    /// A recharge-worker, by its `WORKER_ID`.
    Worker(String),
    /// A recharge-worker's sweep, by the worker running it.
    RechargeSweep(String),
    /// A person, by the name they gave, through an admin route.
    Admin(String),
    /// `payment-api import-legacy`, bringing the replaced system's rows over.
    Import,
    /// payment-api's daily reconciliation with WeChat Pay's bill.
    Reconciliation,
}

impl Actor {
    /// A person decided, not the system.
    pub fn is_person(&self) -> bool {
        matches!(self, Actor::Admin(_))
    }

    fn from_column(text: &str) -> Result<Self, InvalidValue> {
        let invalid = || InvalidValue::Status {
            kind: "actor",
            value: text.to_owned(),
        };
        let (kind, name) = match text.split_once(':') {
            Some((kind, name)) => (kind, Some(name)),
            None => (text, None),
        };
        Ok(match (kind, name) {
            ("user", Some(openid)) => Actor::User(OpenId::parse(openid)?),
            ("wechat-callback", None) => Actor::WechatCallback,
            ("wechat-refund-callback", None) => Actor::WechatRefundCallback,
            ("wechat-query", None) => Actor::WechatQuery,
            ("payment-sweep", None) => Actor::PaymentWatch,
            ("refund-sweep", None) => Actor::RefundSweep,
            ("auto", None) => Actor::AutoRefund,
            ("worker", Some(id)) if !id.is_empty() => Actor::Worker(id.to_owned()),
            ("sweep", Some(id)) if !id.is_empty() => Actor::RechargeSweep(id.to_owned()),
            ("admin", Some(name)) if !name.is_empty() => Actor::Admin(name.to_owned()),
            ("import", None) => Actor::Import,
            ("reconciliation", None) => Actor::Reconciliation,
            _ => return Err(invalid()),
        })
    }

    /// The text stored in `order_events.actor`.
    pub fn as_column(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(openid) => write!(f, "user:{}", openid.as_str()),
            Actor::WechatCallback => f.write_str("wechat-callback"),
            Actor::WechatRefundCallback => f.write_str("wechat-refund-callback"),
            Actor::WechatQuery => f.write_str("wechat-query"),
            Actor::PaymentWatch => f.write_str("payment-sweep"),
            Actor::RefundSweep => f.write_str("refund-sweep"),
            Actor::AutoRefund => f.write_str("auto"),
            Actor::Worker(id) => write!(f, "worker:{id}"),
            Actor::RechargeSweep(id) => write!(f, "sweep:{id}"),
            Actor::Admin(name) => write!(f, "admin:{name}"),
            Actor::Import => f.write_str("import"),
            Actor::Reconciliation => f.write_str("reconciliation"),
        }
    }
}

impl serde::Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl sqlx::Type<sqlx::Postgres> for Actor {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Actor {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Actor::from_column(text)?)
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Actor {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<sqlx::Postgres>>::encode(self.as_column(), buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_round_trip_through_their_column_text() {
        let actors = [
            Actor::User(OpenId::parse("oZp5-abc").unwrap()),
            Actor::WechatCallback,
            Actor::WechatRefundCallback,
            Actor::WechatQuery,
            Actor::PaymentWatch,
            Actor::RefundSweep,
            Actor::AutoRefund,
            Actor::Worker("host-12".into()),
            Actor::RechargeSweep("host-12".into()),
            Actor::Admin("ops zhang".into()),
            Actor::Import,
            Actor::Reconciliation,
        ];
        for actor in actors {
            assert_eq!(Actor::from_column(&actor.as_column()).unwrap(), actor);
        }
        assert_eq!(
            Actor::Admin("ops-zhang".into()).as_column(),
            "admin:ops-zhang"
        );
        for bad in [
            "",
            "admin",
            "admin:",
            "worker:",
            "someone",
            "user:bad id",
            "auto:x",
        ] {
            assert!(Actor::from_column(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_and_anomalies_have_one_spelling_each() {
        for event in OrderEvent::ALL {
            assert_eq!(OrderEvent::parse(event.as_str()).unwrap(), *event);
        }
        assert_eq!(OrderEvent::RefundSucceeded.as_str(), "refund_success");
        assert!(OrderEvent::parse("refund_").is_err());
        for kind in AnomalyKind::ALL {
            assert_eq!(AnomalyKind::parse(kind.as_str()).unwrap(), *kind);
        }
        assert!(AnomalyKind::PaidAfterClose.money_taken_unfulfilled());
        assert!(!AnomalyKind::AmountMismatch.money_taken_unfulfilled());
    }
}
