//! Matching one day's bill against our books, line by line and both ways, to the fen.
//! Pure: what the books say comes in, the differences go out; fetching, confirming with
//! WeChat and storing are the caller's.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{json, Value};
use shared::money::Fen;
use shared::order::{PaymentStatus, RefundStatus};
use utoipa::ToSchema;

use crate::wechat::{BillLine, BillLineKind, TradeBill};

/// Every way a day's bill and our books can disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// Paid at WeChat, not paid here (a callback and every query lost).
    PaidAtWechatOnly,
    /// Paid at WeChat for an order number we never had.
    UnknownOrder,
    /// Paid here, absent from WeChat's bill.
    MissingAtWechat,
    AmountDiffers,
    MerchantDiffers,
    TransactionDiffers,
    /// A refund WeChat made that we never asked for (e.g. by hand in the merchant platform).
    RefundAtWechatOnly,
    /// A refund we recorded as taken that WeChat does not know.
    RefundMissingAtWechat,
    RefundDiffers,
    /// A line of the bill that could not be read.
    MalformedLine,
    /// The bill's summary line is not what its lines add up to.
    BillTotalsDiffer,
    /// Our day's totals differ from the bill's by more than the differences explain.
    DayTotalsDiffer,
}

impl DifferenceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DifferenceKind::PaidAtWechatOnly => "paid_at_wechat_only",
            DifferenceKind::UnknownOrder => "unknown_order",
            DifferenceKind::MissingAtWechat => "missing_at_wechat",
            DifferenceKind::AmountDiffers => "amount_differs",
            DifferenceKind::MerchantDiffers => "merchant_differs",
            DifferenceKind::TransactionDiffers => "transaction_differs",
            DifferenceKind::RefundAtWechatOnly => "refund_at_wechat_only",
            DifferenceKind::RefundMissingAtWechat => "refund_missing_at_wechat",
            DifferenceKind::RefundDiffers => "refund_differs",
            DifferenceKind::MalformedLine => "malformed_line",
            DifferenceKind::BillTotalsDiffer => "bill_totals_differ",
            DifferenceKind::DayTotalsDiffer => "day_totals_differ",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == text)
    }

    pub const ALL: [DifferenceKind; 12] = [
        DifferenceKind::PaidAtWechatOnly,
        DifferenceKind::UnknownOrder,
        DifferenceKind::MissingAtWechat,
        DifferenceKind::AmountDiffers,
        DifferenceKind::MerchantDiffers,
        DifferenceKind::TransactionDiffers,
        DifferenceKind::RefundAtWechatOnly,
        DifferenceKind::RefundMissingAtWechat,
        DifferenceKind::RefundDiffers,
        DifferenceKind::MalformedLine,
        DifferenceKind::BillTotalsDiffer,
        DifferenceKind::DayTotalsDiffer,
    ];
}

/// An order as our books have it.
#[derive(Debug, Clone)]
pub struct OurPayment {
    pub order_number: String,
    pub amount: Fen,
    pub payment_status: PaymentStatus,
    pub transaction_id: Option<String>,
}

impl OurPayment {
    /// Money we know was taken: paid, or paid after it closed (kept on the closed order,
    /// to be refunded).
    fn money_taken(&self) -> bool {
        self.transaction_id.is_some()
            && matches!(
                self.payment_status,
                PaymentStatus::Paid | PaymentStatus::Closed
            )
    }
}

/// A refund as our books have it.
#[derive(Debug, Clone)]
pub struct OurRefund {
    pub order_number: String,
    pub out_refund_no: String,
    pub amount: Fen,
    pub status: RefundStatus,
}

/// One difference, about one subject (an order, a refund, a line, the day).
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub kind: DifferenceKind,
    pub subject: String,
    pub order_number: Option<String>,
    /// The bill minus our books, in fen: of payments, or of refunds when `refund`.
    pub delta_fen: i64,
    pub refund: bool,
    pub detail: Value,
}

/// Our books for one day, as the matching needs them.
pub struct Books {
    /// Every order the bill names, and every order paid here on the day (by WeChat's
    /// `time_end`), by order number.
    pub orders: HashMap<String, OurPayment>,
    /// Order numbers paid here on the day.
    pub paid_on_day: Vec<String>,
    /// Every refund the bill names, and every refund WeChat took on the day by our
    /// record, by `out_refund_no`.
    pub refunds: HashMap<String, OurRefund>,
    /// `out_refund_no`s WeChat took on the day by our record and does not show on this
    /// day's bill, but knows (its `queryrefund`): on another day's bill, not a difference.
    pub refunds_on_other_days: HashSet<String>,
    /// `out_refund_no`s WeChat took on the day by our record.
    pub refunded_on_day: Vec<String>,
}

/// Sums on both sides, in fen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayTotals {
    pub bill_payments_fen: i64,
    pub bill_refunds_fen: i64,
    pub our_payments_fen: i64,
    pub our_refunds_fen: i64,
    /// What the differences do not explain (zero when the books are understood).
    pub unexplained_payments_fen: i64,
    pub unexplained_refunds_fen: i64,
}

pub struct Matched {
    pub differences: Vec<Difference>,
    pub lines_matched: usize,
    pub totals: DayTotals,
}

/// Bill payment lines whose order is here but not paid, for an amount and merchant that
/// agree: the payments to confirm with `queryorder` and record before matching.
pub fn payments_to_confirm<'a>(
    bill: &'a TradeBill,
    books: &Books,
    merchant: &str,
) -> Vec<(&'a BillLine, Fen)> {
    bill.lines
        .iter()
        .filter(|line| line.kind == BillLineKind::Payment && line.merchant_id == merchant)
        .filter_map(|line| {
            let ours = books.orders.get(&line.out_trade_no)?;
            (!ours.money_taken() && ours.amount == line.order_fee).then_some((line, ours.amount))
        })
        .collect()
}

pub fn match_day(bill: &TradeBill, books: &Books, merchant: &str) -> Matched {
    let mut differences = Vec::new();
    let mut matched = 0;
    let mut seen_orders = HashSet::new();
    let mut seen_refunds = HashSet::new();
    for line in &bill.lines {
        let difference = match line.kind {
            BillLineKind::Payment => {
                seen_orders.insert(line.out_trade_no.as_str());
                payment_difference(line, books.orders.get(&line.out_trade_no), merchant)
            }
            BillLineKind::Refund => {
                let out_refund_no = line.out_refund_no.as_deref().unwrap_or_default();
                seen_refunds.insert(out_refund_no);
                refund_difference(line, books.refunds.get(out_refund_no), merchant)
            }
        };
        match difference {
            Some(difference) => differences.push(difference),
            None => matched += 1,
        }
    }
    for order_number in &books.paid_on_day {
        if seen_orders.contains(order_number.as_str()) {
            continue;
        }
        let ours = &books.orders[order_number];
        differences.push(Difference {
            kind: DifferenceKind::MissingAtWechat,
            subject: order_number.clone(),
            order_number: Some(order_number.clone()),
            delta_fen: -ours.amount.get(),
            refund: false,
            detail: json!({"ours": {"amountFen": ours.amount.get(),
                                    "transactionId": ours.transaction_id}}),
        });
    }
    for out_refund_no in &books.refunded_on_day {
        if seen_refunds.contains(out_refund_no.as_str())
            || books.refunds_on_other_days.contains(out_refund_no)
        {
            continue;
        }
        let ours = &books.refunds[out_refund_no];
        differences.push(Difference {
            kind: DifferenceKind::RefundMissingAtWechat,
            subject: out_refund_no.clone(),
            order_number: Some(ours.order_number.clone()),
            delta_fen: -ours.amount.get(),
            refund: true,
            detail: json!({"ours": {"amountFen": ours.amount.get(), "status": ours.status.as_str()}}),
        });
    }
    for malformed in &bill.malformed {
        differences.push(Difference {
            kind: DifferenceKind::MalformedLine,
            subject: malformed.line_no.to_string(),
            order_number: None,
            delta_fen: 0,
            refund: false,
            detail: json!({"line": malformed.line_no, "text": malformed.text,
                           "reason": malformed.reason}),
        });
    }
    let from_lines = bill.totals_from_lines();
    if let Some(summary) = &bill.summary {
        if *summary != from_lines {
            differences.push(Difference {
                kind: DifferenceKind::BillTotalsDiffer,
                subject: "summary".into(),
                order_number: None,
                delta_fen: 0,
                refund: false,
                detail: json!({"summary": summary_json(summary), "lines": summary_json(&from_lines)}),
            });
        }
    } else if !bill.lines.is_empty() || !bill.malformed.is_empty() {
        differences.push(Difference {
            kind: DifferenceKind::BillTotalsDiffer,
            subject: "summary".into(),
            order_number: None,
            delta_fen: 0,
            refund: false,
            detail: json!({"summary": null, "lines": summary_json(&from_lines)}),
        });
    }
    let totals = day_totals(bill, books, &differences);
    if totals.unexplained_payments_fen != 0 || totals.unexplained_refunds_fen != 0 {
        differences.push(Difference {
            kind: DifferenceKind::DayTotalsDiffer,
            subject: "day".into(),
            order_number: None,
            delta_fen: totals.unexplained_payments_fen - totals.unexplained_refunds_fen,
            refund: false,
            detail: serde_json::to_value(&totals).unwrap_or(Value::Null),
        });
    }
    Matched {
        differences,
        lines_matched: matched,
        totals,
    }
}

fn summary_json(summary: &crate::wechat::BillSummary) -> Value {
    json!({"trades": summary.trades, "settlementTotalFen": summary.settlement_total.get(),
           "refundTotalFen": summary.refund_total.get(), "orderTotalFen": summary.order_total.get(),
           "refundRequestTotalFen": summary.refund_request_total.get()})
}

fn line_json(line: &BillLine) -> Value {
    json!({"line": line.line_no, "transactionId": line.transaction_id, "subMchId": line.merchant_id,
           "orderFeeFen": line.order_fee.get(), "settlementFeeFen": line.settlement_fee.get(),
           "refundFeeFen": line.refund_fee.get(), "outRefundNo": line.out_refund_no,
           "tradeState": line.trade_state, "refundStatus": line.refund_status,
           "tradedAt": line.traded_at})
}

fn payment_difference(
    line: &BillLine,
    ours: Option<&OurPayment>,
    merchant: &str,
) -> Option<Difference> {
    let difference = |kind, delta_fen: i64, ours: Value| Difference {
        kind,
        subject: line.out_trade_no.clone(),
        order_number: Some(line.out_trade_no.clone()),
        delta_fen,
        refund: false,
        detail: json!({"bill": line_json(line), "ours": ours}),
    };
    let Some(ours) = ours else {
        return Some(difference(
            DifferenceKind::UnknownOrder,
            line.order_fee.get(),
            Value::Null,
        ));
    };
    let ours_json = json!({"amountFen": ours.amount.get(), "transactionId": ours.transaction_id,
                           "paymentStatus": ours.payment_status.as_str()});
    if line.merchant_id != merchant {
        let ours_taken = if ours.money_taken() {
            ours.amount.get()
        } else {
            0
        };
        return Some(difference(
            DifferenceKind::MerchantDiffers,
            line.order_fee.get() - ours_taken,
            ours_json,
        ));
    }
    if !ours.money_taken() {
        return Some(difference(
            DifferenceKind::PaidAtWechatOnly,
            line.order_fee.get(),
            ours_json,
        ));
    }
    if line.order_fee != ours.amount {
        return Some(difference(
            DifferenceKind::AmountDiffers,
            line.order_fee.get() - ours.amount.get(),
            ours_json,
        ));
    }
    if ours.transaction_id.as_deref() != Some(line.transaction_id.as_str()) {
        return Some(difference(DifferenceKind::TransactionDiffers, 0, ours_json));
    }
    None
}

fn refund_difference(
    line: &BillLine,
    ours: Option<&OurRefund>,
    merchant: &str,
) -> Option<Difference> {
    let out_refund_no = line.out_refund_no.clone().unwrap_or_default();
    let difference = |kind, delta_fen: i64, ours: Value| Difference {
        kind,
        subject: out_refund_no.clone(),
        order_number: Some(line.out_trade_no.clone()),
        delta_fen,
        refund: true,
        detail: json!({"bill": line_json(line), "ours": ours}),
    };
    let Some(ours) = ours.filter(|r| r.order_number == line.out_trade_no) else {
        return Some(difference(
            DifferenceKind::RefundAtWechatOnly,
            line.refund_fee.get(),
            Value::Null,
        ));
    };
    let ours_json = json!({"amountFen": ours.amount.get(), "status": ours.status.as_str()});
    if line.merchant_id != merchant {
        return Some(difference(
            DifferenceKind::MerchantDiffers,
            line.refund_fee.get() - ours.amount.get(),
            ours_json,
        ));
    }
    if line.refund_fee != ours.amount {
        return Some(difference(
            DifferenceKind::RefundDiffers,
            line.refund_fee.get() - ours.amount.get(),
            ours_json,
        ));
    }
    None
}

/// Both sides' sums, and what the differences leave unexplained. Our payments are the
/// orders paid on the day by WeChat's clock; our refunds are those the bill names plus
/// those WeChat took on the day by our record and shows on no day.
fn day_totals(bill: &TradeBill, books: &Books, differences: &[Difference]) -> DayTotals {
    let (mut bill_payments, mut bill_refunds) = (0i64, 0i64);
    let mut our_refunds = 0i64;
    for line in &bill.lines {
        match line.kind {
            BillLineKind::Payment => bill_payments += line.order_fee.get(),
            BillLineKind::Refund => {
                bill_refunds += line.refund_fee.get();
                if let Some(ours) = line
                    .out_refund_no
                    .as_deref()
                    .and_then(|n| books.refunds.get(n))
                    .filter(|r| r.order_number == line.out_trade_no)
                {
                    our_refunds += ours.amount.get();
                }
            }
        }
    }
    for out_refund_no in &books.refunded_on_day {
        let in_bill = bill
            .lines
            .iter()
            .any(|l| l.out_refund_no.as_deref() == Some(out_refund_no.as_str()));
        if !in_bill && !books.refunds_on_other_days.contains(out_refund_no) {
            our_refunds += books.refunds[out_refund_no].amount.get();
        }
    }
    let our_payments: i64 = books
        .paid_on_day
        .iter()
        .map(|n| books.orders[n].amount.get())
        .sum();
    // Lines for orders paid here on another day (never, when paid_at is WeChat's time_end)
    // are in the bill's sum and not in ours: explained by the line, not a difference.
    let paid_on_day: HashSet<&str> = books.paid_on_day.iter().map(String::as_str).collect();
    let other_day_lines: i64 = bill
        .lines
        .iter()
        .filter(|l| {
            l.kind == BillLineKind::Payment && !paid_on_day.contains(l.out_trade_no.as_str())
        })
        .filter(|l| {
            books
                .orders
                .get(&l.out_trade_no)
                .is_some_and(OurPayment::money_taken)
        })
        .map(|l| books.orders[&l.out_trade_no].amount.get())
        .sum();
    let explained = |refund: bool| -> i64 {
        differences
            .iter()
            .filter(|d| d.refund == refund)
            .map(|d| d.delta_fen)
            .sum()
    };
    DayTotals {
        bill_payments_fen: bill_payments,
        bill_refunds_fen: bill_refunds,
        our_payments_fen: our_payments,
        our_refunds_fen: our_refunds,
        unexplained_payments_fen: bill_payments - our_payments - other_day_lines - explained(false),
        unexplained_refunds_fen: bill_refunds - our_refunds - explained(true),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::wechat::BillSummary;

    const MERCHANT: &str = "1712734762";

    fn fen(n: i64) -> Fen {
        Fen::new(n).unwrap()
    }

    fn payment_line(order: &str, amount: i64, transaction: &str) -> BillLine {
        BillLine {
            line_no: 2,
            kind: BillLineKind::Payment,
            traded_at: Utc::now(),
            merchant_id: MERCHANT.into(),
            transaction_id: transaction.into(),
            out_trade_no: order.into(),
            openid: "o-1".into(),
            trade_state: "SUCCESS".into(),
            settlement_fee: fen(amount),
            order_fee: fen(amount),
            refund_id: None,
            out_refund_no: None,
            refund_fee: fen(0),
            refund_status: None,
        }
    }

    fn refund_line(order: &str, out_refund_no: &str, amount: i64) -> BillLine {
        BillLine {
            kind: BillLineKind::Refund,
            trade_state: "REFUND".into(),
            settlement_fee: fen(0),
            order_fee: fen(0),
            refund_id: Some("5030".into()),
            out_refund_no: Some(out_refund_no.into()),
            refund_fee: fen(amount),
            refund_status: Some("SUCCESS".into()),
            ..payment_line(order, 0, "4200")
        }
    }

    fn bill(lines: Vec<BillLine>) -> TradeBill {
        let mut bill = TradeBill {
            lines,
            malformed: Vec::new(),
            summary: None,
            text: String::new(),
        };
        bill.summary = Some(bill.totals_from_lines());
        bill
    }

    fn paid(order: &str, amount: i64, transaction: &str) -> OurPayment {
        OurPayment {
            order_number: order.into(),
            amount: fen(amount),
            payment_status: PaymentStatus::Paid,
            transaction_id: Some(transaction.into()),
        }
    }

    fn books(orders: Vec<OurPayment>, paid_on_day: &[&str], refunds: Vec<OurRefund>) -> Books {
        let refunded_on_day = refunds.iter().map(|r| r.out_refund_no.clone()).collect();
        Books {
            orders: orders
                .into_iter()
                .map(|o| (o.order_number.clone(), o))
                .collect(),
            paid_on_day: paid_on_day.iter().map(|s| s.to_string()).collect(),
            refunds: refunds
                .into_iter()
                .map(|r| (r.out_refund_no.clone(), r))
                .collect(),
            refunds_on_other_days: HashSet::new(),
            refunded_on_day,
        }
    }

    fn kinds(matched: &Matched) -> Vec<(DifferenceKind, String, i64)> {
        matched
            .differences
            .iter()
            .map(|d| (d.kind, d.subject.clone(), d.delta_fen))
            .collect()
    }

    #[test]
    fn a_day_whose_lines_all_match_balances() {
        let bill = bill(vec![
            payment_line("ORD1", 1136, "T1"),
            payment_line("ORD2", 500, "T2"),
            refund_line("ORD2", "ORD2-R", 500),
        ]);
        let books = books(
            vec![paid("ORD1", 1136, "T1"), paid("ORD2", 500, "T2")],
            &["ORD1", "ORD2"],
            vec![OurRefund {
                order_number: "ORD2".into(),
                out_refund_no: "ORD2-R".into(),
                amount: fen(500),
                status: RefundStatus::Success,
            }],
        );
        let matched = match_day(&bill, &books, MERCHANT);
        assert_eq!(kinds(&matched), vec![]);
        assert_eq!(matched.lines_matched, 3);
        assert_eq!(matched.totals.bill_payments_fen, 1636);
        assert_eq!(matched.totals.our_payments_fen, 1636);
        assert_eq!(matched.totals.our_refunds_fen, 500);
    }

    #[test]
    fn every_kind_of_line_difference_is_found_both_ways_and_explains_the_totals() {
        let mut other_merchant = payment_line("ORD5", 300, "T5");
        other_merchant.merchant_id = "999".into();
        let bill = bill(vec![
            payment_line("ORD1", 1137, "T1"),    // amount differs by a fen
            payment_line("ORD2", 500, "T2-bis"), // another transaction
            payment_line("ORD3", 700, "T3"),     // unpaid here
            payment_line("ORDX", 900, "TX"),     // never ours
            other_merchant,
            refund_line("ORD1", "ORD1-W", 200), // refunded at WeChat only
        ]);
        let mut unpaid = paid("ORD3", 700, "T3");
        unpaid.payment_status = PaymentStatus::Unpaid;
        unpaid.transaction_id = None;
        let books = books(
            vec![
                paid("ORD1", 1136, "T1"),
                paid("ORD2", 500, "T2"),
                unpaid,
                paid("ORD4", 800, "T4"), // paid here, absent at WeChat
                paid("ORD5", 300, "T5"),
            ],
            &["ORD1", "ORD2", "ORD4", "ORD5"],
            vec![OurRefund {
                order_number: "ORD2".into(),
                out_refund_no: "ORD2-R".into(), // taken here, WeChat shows none
                amount: fen(500),
                status: RefundStatus::Accepted,
            }],
        );
        let matched = match_day(&bill, &books, MERCHANT);
        assert_eq!(
            kinds(&matched),
            vec![
                (DifferenceKind::AmountDiffers, "ORD1".into(), 1),
                (DifferenceKind::TransactionDiffers, "ORD2".into(), 0),
                (DifferenceKind::PaidAtWechatOnly, "ORD3".into(), 700),
                (DifferenceKind::UnknownOrder, "ORDX".into(), 900),
                (DifferenceKind::MerchantDiffers, "ORD5".into(), 0),
                (DifferenceKind::RefundAtWechatOnly, "ORD1-W".into(), 200),
                (DifferenceKind::MissingAtWechat, "ORD4".into(), -800),
                (DifferenceKind::RefundMissingAtWechat, "ORD2-R".into(), -500),
            ]
        );
        assert_eq!(matched.lines_matched, 0);
        assert_eq!(matched.totals.unexplained_payments_fen, 0);
        assert_eq!(matched.totals.unexplained_refunds_fen, 0);
    }

    #[test]
    fn a_refund_on_another_days_bill_is_no_difference() {
        let bill = bill(vec![]);
        let mut books = books(
            vec![],
            &[],
            vec![OurRefund {
                order_number: "ORD2".into(),
                out_refund_no: "ORD2-R".into(),
                amount: fen(500),
                status: RefundStatus::Success,
            }],
        );
        books.refunds_on_other_days.insert("ORD2-R".into());
        let matched = match_day(&bill, &books, MERCHANT);
        assert_eq!(kinds(&matched), vec![]);
        assert_eq!(matched.totals.our_refunds_fen, 0);
    }

    #[test]
    fn a_duplicated_line_and_a_wrong_summary_are_differences_of_the_day() {
        let mut bill = bill(vec![
            payment_line("ORD1", 1136, "T1"),
            payment_line("ORD1", 1136, "T1"),
        ]);
        bill.summary = Some(BillSummary {
            trades: 2,
            settlement_total: fen(2273),
            refund_total: fen(0),
            order_total: fen(2273),
            refund_request_total: fen(0),
        });
        let books = books(vec![paid("ORD1", 1136, "T1")], &["ORD1"], vec![]);
        let matched = match_day(&bill, &books, MERCHANT);
        let found: Vec<_> = kinds(&matched).into_iter().map(|(k, _, _)| k).collect();
        assert_eq!(
            found,
            vec![
                DifferenceKind::BillTotalsDiffer,
                DifferenceKind::DayTotalsDiffer
            ]
        );
        assert_eq!(matched.totals.unexplained_payments_fen, 1136);
    }

    #[test]
    fn only_unpaid_orders_with_agreeing_amount_and_merchant_are_confirmed() {
        let mut unpaid = paid("ORD3", 700, "T3");
        unpaid.payment_status = PaymentStatus::Unpaid;
        unpaid.transaction_id = None;
        let mut cheaper = unpaid.clone();
        cheaper.order_number = "ORD4".into();
        let bill = bill(vec![
            payment_line("ORD1", 1136, "T1"),
            payment_line("ORD3", 700, "T3"),
            payment_line("ORD4", 701, "T4"),
        ]);
        let books = books(
            vec![paid("ORD1", 1136, "T1"), unpaid, cheaper],
            &["ORD1"],
            vec![],
        );
        let confirm: Vec<_> = payments_to_confirm(&bill, &books, MERCHANT)
            .into_iter()
            .map(|(line, amount)| (line.out_trade_no.clone(), amount.get()))
            .collect();
        assert_eq!(confirm, vec![("ORD3".to_owned(), 700)]);
    }
}
