//! The order object the mini-program reads: the replaced system's, field for field (names,
//! JSON types, meanings; see docs/compatibility.md), then what this project adds.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use shared::money::Fen;
use shared::order::{OrderNumber, PaymentStatus, RechargeStatus, RefundStatus};
use utoipa::ToSchema;

use super::envelope::{iso_millis, iso_millis_or_null};
use crate::payments::refunds::Refund;
use crate::store::orders::OrderRow;

/// What the customer is told of their refund: its state and amount, never the reason a
/// person wrote or WeChat's error.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerRefund {
    /// `requested`, `accepted` (WeChat is returning it), `success` or `failed`.
    #[schema(value_type = String)]
    status: RefundStatus,
    #[schema(value_type = i64)]
    amount_fen: Fen,
    #[serde(serialize_with = "iso_millis")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "iso_millis_or_null")]
    completed_at: Option<DateTime<Utc>>,
}

impl From<Refund> for CustomerRefund {
    fn from(refund: Refund) -> Self {
        CustomerRefund {
            status: refund.status,
            amount_fen: refund.amount_fen,
            created_at: refund.created_at,
            completed_at: refund.completed_at,
        }
    }
}

/// The order's owner, on `GET /orders/{orderNumber}` only, as the replaced system gave it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderUser {
    openid: String,
    appid: Option<String>,
    #[serde(serialize_with = "iso_millis")]
    created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    #[schema(value_type = String, example = "ORD1795562423906XQ68VSFXABCD")]
    order_number: OrderNumber,
    openid: String,
    #[schema(example = "88616609")]
    phone_number: String,
    /// Always `Unitel`.
    #[schema(example = "Unitel")]
    product_operator: &'static str,
    /// `voice`, `data` or `postpaid`.
    #[schema(example = "voice")]
    product_recharge_type: &'static str,
    /// Unitel's (Mongolian) name; `Bill Payment` for a postpaid bill.
    product_name: String,
    product_eng_name: Option<String>,
    /// Unitel's product code; for a postpaid bill, the invoice period.
    product_code: String,
    /// The price in tugrik, as a decimal string without trailing zeros (`"5000"`).
    #[schema(example = "5000")]
    product_price_tg: String,
    /// The price in yuan, as a decimal string without trailing zeros (`"11.36"`, `"10.2"`).
    #[schema(example = "11.36")]
    product_price_rmb: String,
    product_unit: Option<i32>,
    product_data: Option<String>,
    product_days: Option<i32>,
    /// Unitel's transaction number once credited.
    seq_id: Option<String>,
    /// `unpaid` or `paid`: an order closed unpaid is `unpaid` here (see `paymentState`).
    #[schema(example = "paid")]
    payment_status: &'static str,
    /// Null until paid; then `pending` (being credited), `success`, `failed` (refunded) or
    /// `timeout` (outcome being checked with Unitel; see `rechargeState`).
    #[schema(example = "success")]
    recharge_status: Option<&'static str>,
    #[serde(serialize_with = "iso_millis")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "iso_millis_or_null")]
    paid_at: Option<DateTime<Utc>>,
    /// When a worker took the top-up.
    #[serde(serialize_with = "iso_millis_or_null")]
    recharge_at: Option<DateTime<Utc>>,
    /// Always 0.
    version: i32,
    /// Always null: what went wrong with a payment is for the operator.
    #[schema(value_type = Option<String>)]
    anomaly_reason: Option<()>,
    #[schema(value_type = Option<String>)]
    anomaly_details: Option<()>,

    // What this project adds.
    /// `unpaid`, `paid` or `closed` (no longer payable).
    #[schema(value_type = String, example = "paid")]
    payment_state: PaymentStatus,
    /// Null until paid; then `pending`, `processing`, `success`, `failed` or `unknown`
    /// (being checked; nobody is charged twice).
    #[schema(value_type = Option<String>, example = "success")]
    recharge_state: Option<RechargeStatus>,
    /// The price in fen, what WeChat Pay charges.
    #[schema(value_type = i64, example = 1136)]
    amount_fen: Fen,
    /// Tugrik per yuan when the order was priced.
    #[schema(value_type = String, example = "440")]
    exchange_rate: Decimal,
    /// WeChat Pay's transaction, once paid.
    transaction_id: Option<String>,
    #[serde(serialize_with = "iso_millis_or_null")]
    closed_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "iso_millis_or_null")]
    recharged_at: Option<DateTime<Utc>>,
    /// Unitel's VAT e-receipt (e-barimt), the buyer's to keep.
    #[schema(value_type = Option<Object>)]
    vat_receipt: Option<serde_json::Value>,
    /// Where the order is, for the customer (Chinese); null when there is nothing to say.
    recharge_note: Option<&'static str>,
    /// The refund, once one was requested.
    refund: Option<CustomerRefund>,
    #[serde(serialize_with = "iso_millis")]
    updated_at: DateTime<Utc>,
    /// On `GET /orders/{orderNumber}` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<OrderUser>,
}

/// A decimal as JavaScript's `Number.toString` of a Prisma Decimal wrote it: no trailing
/// zeros (`5000`, `10.2`, `11.36`).
fn decimal_text(value: Decimal) -> String {
    value.normalize().to_string()
}

/// The replaced system's two payment states: a closed order was never paid.
fn legacy_payment_status(status: PaymentStatus) -> &'static str {
    match status {
        PaymentStatus::Paid => "paid",
        PaymentStatus::Unpaid | PaymentStatus::Closed => "unpaid",
    }
}

/// The replaced system's recharge states: null before payment; `processing` is its
/// `pending` (not finished), `unknown` its `timeout` (outcome not known).
fn legacy_recharge_status(
    payment: PaymentStatus,
    recharge: RechargeStatus,
) -> Option<&'static str> {
    if payment != PaymentStatus::Paid {
        return None;
    }
    Some(match recharge {
        RechargeStatus::Pending | RechargeStatus::Processing => "pending",
        RechargeStatus::Success => "success",
        RechargeStatus::Failed => "failed",
        RechargeStatus::Unknown => "timeout",
    })
}

/// What the customer reads about where their order is, in their language. Unitel's
/// messages, WeChat's errors and a person's notes stay in the order's history.
fn customer_note(
    payment: PaymentStatus,
    recharge: RechargeStatus,
    refund: Option<RefundStatus>,
) -> Option<&'static str> {
    Some(match (payment, recharge, refund) {
        (_, _, Some(RefundStatus::Success)) => "款项已原路退回",
        (_, _, Some(RefundStatus::Failed)) => "退款遇到问题，客服正在处理",
        (_, _, Some(_)) => "退款处理中",
        (PaymentStatus::Closed, _, None) => "订单已关闭",
        (PaymentStatus::Unpaid, _, None) => return None,
        (PaymentStatus::Paid, RechargeStatus::Pending | RechargeStatus::Processing, None) => {
            "充值处理中"
        }
        (PaymentStatus::Paid, RechargeStatus::Success, None) => return None,
        (PaymentStatus::Paid, RechargeStatus::Failed, None) => "充值未成功，款项将原路退回",
        (PaymentStatus::Paid, RechargeStatus::Unknown, None) => "充值结果确认中，请勿重复下单",
    })
}

impl OrderView {
    pub fn new(row: OrderRow, refund: Option<Refund>) -> Self {
        let recharge_note = customer_note(
            row.payment_status,
            row.recharge_status,
            refund.as_ref().map(|r| r.status),
        );
        let paid = row.payment_status == PaymentStatus::Paid;
        OrderView {
            product_price_tg: row.price_mnt.get().to_string(),
            product_price_rmb: decimal_text(row.amount_fen.yuan()),
            payment_status: legacy_payment_status(row.payment_status),
            recharge_status: legacy_recharge_status(row.payment_status, row.recharge_status),
            product_operator: "Unitel",
            product_recharge_type: row.recharge_type.as_str(),
            order_number: row.order_number,
            openid: row.openid,
            phone_number: row.phone_number.to_string(),
            product_name: row.product_name,
            product_eng_name: row.product_eng_name,
            product_code: row.product_code,
            product_unit: row.product_unit,
            product_data: row.product_data,
            product_days: row.product_days,
            seq_id: row.seq_id,
            created_at: row.created_at,
            paid_at: row.paid_at,
            recharge_at: row.recharge_at,
            version: 0,
            anomaly_reason: None,
            anomaly_details: None,
            payment_state: row.payment_status,
            recharge_state: paid.then_some(row.recharge_status),
            amount_fen: row.amount_fen,
            exchange_rate: row.exchange_rate.normalize(),
            transaction_id: row.transaction_id,
            closed_at: row.closed_at,
            recharged_at: row.recharged_at,
            vat_receipt: row.vat_receipt,
            recharge_note,
            refund: refund.map(CustomerRefund::from),
            updated_at: row.updated_at,
            user: None,
        }
    }

    /// With its owner, as `GET /orders/{orderNumber}` shows it.
    pub fn with_user(mut self, appid: Option<String>, user_created_at: DateTime<Utc>) -> Self {
        self.user = Some(OrderUser {
            openid: self.openid.clone(),
            appid,
            created_at: user_created_at,
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn decimals_are_written_without_trailing_zeros() {
        assert_eq!(decimal_text(Decimal::from_str("5000.00").unwrap()), "5000");
        assert_eq!(decimal_text(Decimal::from_str("10.20").unwrap()), "10.2");
        assert_eq!(decimal_text(Decimal::from_str("11.36").unwrap()), "11.36");
        assert_eq!(decimal_text(Decimal::from_str("0.00").unwrap()), "0");
    }

    #[test]
    fn states_map_to_the_replaced_systems_words() {
        assert_eq!(legacy_payment_status(PaymentStatus::Closed), "unpaid");
        assert_eq!(
            legacy_recharge_status(PaymentStatus::Unpaid, RechargeStatus::Pending),
            None
        );
        assert_eq!(
            legacy_recharge_status(PaymentStatus::Paid, RechargeStatus::Processing),
            Some("pending")
        );
        assert_eq!(
            legacy_recharge_status(PaymentStatus::Paid, RechargeStatus::Unknown),
            Some("timeout")
        );
    }
}
