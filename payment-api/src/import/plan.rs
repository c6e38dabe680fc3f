//! What an order of the replaced system becomes here: pure decisions from its row and
//! WeChat Pay's answer, so that every rule is tested on its own.
//!
//! The rules that keep money safe:
//! - a top-up that may have reached Unitel is never sent again: a claimed order without a
//!   final status, `timeout`, `failed` (the replaced system also wrote `failed` when Unitel
//!   did not answer in time) and anything it did not know become `unknown`, for a person;
//! - only a paid order provably never sent (never claimed: no `recharge_at`, no `seq_id`)
//!   goes to the workers, once the import has claimed it there (see `mod.rs`);
//! - paid means WeChat says so, for the order's amount: the transaction id comes from
//!   `queryorder`, and a row the replaced system marked paid without a payment at WeChat is
//!   not imported (reported for a person);
//! - nothing is marked `failed`, so nothing imported is refunded automatically.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shared::lifecycle::{ImportedPayment, ImportedRecharge};
use shared::money::{Fen, Mnt, MntPerYuan};
use shared::order::{Msisdn, OrderNumber, RechargeType};

use super::legacy::LegacyOrder;

/// What WeChat Pay knows of an order (`queryorder`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtWechat {
    /// `ORDERNOTEXIST`: no payment was ever started.
    Unknown,
    /// Started, not paid (`NOTPAY`, `USERPAYING`, `PAYERROR`...).
    Started,
    /// `CLOSED` or `REVOKED`.
    Closed,
    /// `REFUND`: paid, then given back (by hand: the replaced system never refunded).
    Refunded,
    Paid {
        transaction_id: String,
        total_fee: Option<i64>,
        paid_at: Option<DateTime<Utc>>,
    },
}

/// The order's fields, checked and converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub order_number: OrderNumber,
    pub msisdn: Msisdn,
    pub recharge_type: RechargeType,
    pub price: Mnt,
    pub amount: Fen,
    pub rate: MntPerYuan,
}

/// Why a row is not imported.
pub type Unmapped = String;

/// The row's own fields: what the order is, in this project's types.
pub fn product(order: &LegacyOrder) -> Result<Product, Unmapped> {
    let order_number = OrderNumber::parse(&order.order_number).map_err(|_| {
        format!(
            "order number {:?} is not one WeChat Pay accepts",
            order.order_number
        )
    })?;
    let msisdn = Msisdn::from_written(&order.phone_number).ok_or_else(|| {
        format!(
            "phone number {:?} is not an 8-digit Unitel number",
            order.phone_number
        )
    })?;
    if !order.product_operator.eq_ignore_ascii_case("unitel") {
        return Err(format!(
            "operator {:?} is not sold here",
            order.product_operator
        ));
    }
    let recharge_type = RechargeType::parse(&order.product_recharge_type.to_ascii_lowercase())
        .map_err(|_| format!("recharge type {:?} is unknown", order.product_recharge_type))?;
    let tugrik = order.product_price_tg;
    if tugrik.fract() != Decimal::ZERO {
        return Err(format!(
            "price {tugrik} MNT is not a whole number of tugrik"
        ));
    }
    let price = i64::try_from(tugrik.trunc())
        .ok()
        .filter(|t| *t > 0)
        .and_then(|t| Mnt::new(t).ok())
        .ok_or_else(|| format!("price {tugrik} MNT is not a positive amount"))?;
    let fen = order.product_price_rmb * Decimal::from(100);
    if fen.fract() != Decimal::ZERO {
        return Err(format!(
            "price {} CNY is not a whole number of fen",
            order.product_price_rmb
        ));
    }
    let amount = i64::try_from(fen.trunc())
        .ok()
        .filter(|f| *f > 0)
        .and_then(|f| Fen::new(f).ok())
        .ok_or_else(|| {
            format!(
                "price {} CNY is not a positive amount",
                order.product_price_rmb
            )
        })?;
    // The replaced system kept no rate per order: the one its two prices imply.
    let rate = MntPerYuan::new((tugrik / order.product_price_rmb).round_dp(4))
        .map_err(|_| "its prices imply no exchange rate".to_owned())?;
    Ok(Product {
        order_number,
        msisdn,
        recharge_type,
        price,
        amount,
        rate,
    })
}

/// Where the order stands with payment and top-up, from the row and WeChat's answer.
pub fn payment(
    order: &LegacyOrder,
    amount: Fen,
    wechat: &AtWechat,
) -> Result<ImportedPayment, Unmapped> {
    let marked_paid = order.payment_status == "paid";
    match wechat {
        AtWechat::Paid {
            transaction_id,
            total_fee,
            paid_at,
        } => {
            if *total_fee != Some(amount.get()) {
                return Err(format!(
                    "WeChat Pay took {} fen for it, the order says {} fen",
                    total_fee.map_or("an unknown amount".into(), |f| f.to_string()),
                    amount.get()
                ));
            }
            Ok(ImportedPayment::Paid {
                transaction_id: transaction_id.clone(),
                paid_at: paid_at.or(order.paid_at).unwrap_or(order.created_at),
                recharge: recharge(order),
            })
        }
        _ if marked_paid => Err(match wechat {
            AtWechat::Refunded => {
                "marked paid there; WeChat Pay says its payment was refunded".into()
            }
            _ => "marked paid there, but WeChat Pay has no payment for it".into(),
        }),
        AtWechat::Unknown => Ok(ImportedPayment::NotStarted),
        AtWechat::Started => Ok(ImportedPayment::Started {
            at: order.created_at,
        }),
        AtWechat::Closed | AtWechat::Refunded => Ok(ImportedPayment::Closed),
    }
}

/// A paid order's top-up, from what the replaced system recorded of it.
fn recharge(order: &LegacyOrder) -> ImportedRecharge {
    let status = order.recharge_status.as_deref();
    let never_claimed =
        (order.recharge_at.is_none() && order.seq_id.is_none()) || order.claimed_by_import();
    match status {
        Some("success") => ImportedRecharge::Credited {
            seq_id: order.seq_id.clone(),
            at: order.recharge_at.or(order.paid_at).unwrap_or(order.created_at),
        },
        // It claimed every top-up (`recharge_at`) before sending it; the import's own claim
        // means it never did.
        None | Some("pending") if never_claimed => ImportedRecharge::NotSent,
        _ => ImportedRecharge::MaybeSent {
            claimed_at: order.claimed_at(),
            seq_id: order.seq_id.clone(),
            reason: match status {
                Some("failed") => "the replaced system recorded it failed, which it also did when Unitel did not answer in time: check with Unitel".into(),
                Some(other) => format!("the replaced system recorded {other:?}: the top-up may have reached Unitel; check with Unitel"),
                None => "the replaced system claimed it without recording an outcome: check with Unitel".into(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn order(payment_status: &str, recharge_status: Option<&str>, claimed: bool) -> LegacyOrder {
        let at = DateTime::parse_from_rfc3339("2025-10-18T03:04:05.678Z")
            .unwrap()
            .to_utc();
        LegacyOrder {
            order_number: "ORD1760781234567V1StGXR8_Z5j".into(),
            openid: "o_test".into(),
            phone_number: "88616609".into(),
            product_operator: "Unitel".into(),
            product_recharge_type: "voice".into(),
            product_name: "5000 нэгж".into(),
            product_eng_name: Some("5000 unit".into()),
            product_code: "SD5000".into(),
            product_price_tg: Decimal::from_str("5000.00").unwrap(),
            product_price_rmb: Decimal::from_str("11.36").unwrap(),
            product_unit: Some(5000),
            product_data: None,
            product_days: Some(30),
            seq_id: None,
            payment_status: payment_status.into(),
            recharge_status: recharge_status.map(str::to_owned),
            created_at: at,
            paid_at: (payment_status == "paid").then_some(at),
            recharge_at: claimed.then_some(at),
        }
    }

    fn paid_at_wechat(fee: i64) -> AtWechat {
        AtWechat::Paid {
            transaction_id: "4200001".into(),
            total_fee: Some(fee),
            paid_at: None,
        }
    }

    fn recharge_of(order: &LegacyOrder) -> ImportedRecharge {
        match payment(order, Fen::new(1136).unwrap(), &paid_at_wechat(1136)).unwrap() {
            ImportedPayment::Paid { recharge, .. } => recharge,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_a_never_claimed_top_up_goes_to_the_workers() {
        assert_eq!(
            recharge_of(&order("paid", Some("pending"), false)),
            ImportedRecharge::NotSent
        );
        assert_eq!(
            recharge_of(&order("paid", None, false)),
            ImportedRecharge::NotSent
        );
        assert_eq!(
            recharge_of(&order("unpaid", None, false)),
            ImportedRecharge::NotSent
        );
        for (status, claimed) in [
            (Some("pending"), true),
            (Some("failed"), true),
            (Some("failed"), false),
            (Some("timeout"), true),
            (Some("unknown"), true),
            (Some("completed"), true),
            (None, true),
        ] {
            assert!(
                matches!(
                    recharge_of(&order("paid", status, claimed)),
                    ImportedRecharge::MaybeSent { .. }
                ),
                "{status:?} claimed {claimed}"
            );
        }
        let mut with_seq = order("paid", Some("pending"), false);
        with_seq.seq_id = Some("1760754386127".into());
        assert!(matches!(
            recharge_of(&with_seq),
            ImportedRecharge::MaybeSent {
                seq_id: Some(_),
                ..
            }
        ));
        assert!(matches!(
            recharge_of(&order("paid", Some("success"), true)),
            ImportedRecharge::Credited { .. }
        ));
    }

    #[test]
    fn the_imports_own_claim_there_is_no_top_up_sent() {
        let mut held = order("paid", Some("pending"), false);
        held.recharge_at = Some(super::super::legacy::import_claim().and_utc());
        assert!(held.claimed_by_import());
        assert_eq!(recharge_of(&held), ImportedRecharge::NotSent);
        // Once it has a seq, the replaced system sent it after all.
        held.seq_id = Some("1760754386127".into());
        assert!(matches!(
            recharge_of(&held),
            ImportedRecharge::MaybeSent { .. }
        ));
        // A claim of its own the import froze may have been sent.
        let mut frozen = order("paid", Some("pending"), true);
        frozen.recharge_at = Some(super::super::legacy::frozen_claim().and_utc());
        assert!(!frozen.claimed_by_import());
        assert!(matches!(
            recharge_of(&frozen),
            ImportedRecharge::MaybeSent {
                claimed_at: None,
                ..
            }
        ));
    }

    #[test]
    fn paid_means_wechat_took_the_orders_amount() {
        let amount = Fen::new(1136).unwrap();
        assert!(payment(
            &order("paid", Some("success"), true),
            amount,
            &paid_at_wechat(1000)
        )
        .is_err());
        for answer in [
            AtWechat::Unknown,
            AtWechat::Started,
            AtWechat::Closed,
            AtWechat::Refunded,
        ] {
            assert!(
                payment(&order("paid", Some("pending"), false), amount, &answer).is_err(),
                "{answer:?}"
            );
        }
        assert_eq!(
            payment(&order("unpaid", None, false), amount, &AtWechat::Unknown).unwrap(),
            ImportedPayment::NotStarted
        );
        assert!(matches!(
            payment(&order("unpaid", None, false), amount, &AtWechat::Started).unwrap(),
            ImportedPayment::Started { .. }
        ));
        assert_eq!(
            payment(&order("unpaid", None, false), amount, &AtWechat::Closed).unwrap(),
            ImportedPayment::Closed
        );
    }

    #[test]
    fn rows_are_converted_exactly_or_reported() {
        let product = product(&order("unpaid", None, false)).unwrap();
        assert_eq!(product.price.get(), 5000);
        assert_eq!(product.amount.get(), 1136);
        assert_eq!(product.rate.get().to_string(), "440.1408");
        let mut fractional = order("unpaid", None, false);
        fractional.product_price_tg = Decimal::from_str("74220.50").unwrap();
        assert!(super::product(&fractional)
            .unwrap_err()
            .contains("whole number of tugrik"));
        let mut mobicom = order("unpaid", None, false);
        mobicom.product_operator = "Mobicom".into();
        assert!(super::product(&mobicom).is_err());
        let mut free = order("unpaid", None, false);
        free.product_price_rmb = Decimal::ZERO;
        assert!(super::product(&free).is_err());
        assert_eq!(
            Msisdn::from_written("+976 8861 6609").unwrap().as_str(),
            "88616609"
        );
        assert_eq!(
            Msisdn::from_written("97688616609").unwrap().as_str(),
            "88616609"
        );
        assert!(Msisdn::from_written("12345").is_none());
    }
}
