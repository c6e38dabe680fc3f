//! The alert's two state machines, as the `alerts` table's CHECK constraints spell them:
//! what it is about, and where each channel's delivery stands.

/// A closed set of values stored as TEXT: written as its text, read back through `parse`,
/// so a row the enum does not know is a decode error, not a string passed on.
macro_rules! alert_text {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(value: &str) -> Option<Self> {
                match value {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <String as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <String as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                $name::parse(text)
                    .ok_or_else(|| format!("{text:?} is not a {}", stringify!($name)).into())
            }
        }

        impl sqlx::Encode<'_, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }
    };
}

alert_text!(
    /// What an alert is about: its `kind` column, and the first word of what a person reads.
    AlertKind {
        /// A top-up whose outcome nobody knows: Unitel may have credited it.
        RechargeUnknown => "recharge_unknown",
        RechargeFailed => "recharge_failed",
        /// A top-up taken over after its worker lost track of it.
        RechargeStuck => "recharge_stuck",
        RefundFailed => "refund_failed",
        RefundStuck => "refund_stuck",
        PaymentWithoutCallback => "payment_without_callback",
        MoneyTakenUnfulfilled => "money_taken_unfulfilled",
        LateTopUpOutcome => "late_top_up_outcome",
        CallbackAnomaly => "callback_anomaly",
        ReconciliationDifference => "reconciliation_difference",
        ReconciliationLate => "reconciliation_late",
        OutboxBacklog => "outbox_backlog",
        QueueDepth => "queue_depth",
        DeadLetters => "dead_letters",
    }
);

impl AlertKind {
    /// Alerts about a customer's money: delivered before any other, so that a flood of
    /// others cannot hold them back.
    pub const MONEY: &'static [AlertKind] = &[
        AlertKind::RechargeUnknown,
        AlertKind::MoneyTakenUnfulfilled,
        AlertKind::RefundFailed,
        AlertKind::RefundStuck,
        AlertKind::RechargeFailed,
        AlertKind::RechargeStuck,
        AlertKind::LateTopUpOutcome,
    ];
}

alert_text!(
    /// Where an alert stands on one channel (`wecom_status`, `email_status`).
    Delivery {
        /// Not delivered yet: the dispatcher will try (again).
        Pending => "pending",
        Sent => "sent",
        /// The channel is not configured: nothing will be sent there.
        Off => "off",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_reads_back_as_itself() {
        for kind in AlertKind::ALL {
            assert_eq!(AlertKind::parse(kind.as_str()), Some(*kind));
        }
        for status in Delivery::ALL {
            assert_eq!(Delivery::parse(status.as_str()), Some(*status));
        }
        assert_eq!(AlertKind::parse("recharge_lost"), None);
    }
}
