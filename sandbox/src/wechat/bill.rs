//! `POST /_/pay/downloadbill`: the day's trade bill, built from the orders the simulator
//! holds as paid and the refunds it accepted, as WeChat Pay v2 writes it (a header, one
//! backtick-prefixed line per payment or refund, a summary) and as the cloud-hosting open
//! interface relays it (the text as a JSON string in `respdata`).

use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use chrono::{Days, Months, NaiveDate, NaiveTime, Utc};
use serde_json::{json, Map, Value};

use crate::config::BillsReady;
use crate::faults::BillAlteration;
use crate::ids;
use crate::state::AppState;
use crate::wechat::envelope::{self, Fields, PlatformError};
use crate::wechat::orders::BillEntry;

pub(crate) const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
pub(crate) const SUMMARY_HEADER: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";

/// The simulated merchant's fee, 0.60 %: exactly 6 hundred-thousandths of a yuan per fen,
/// so the five-decimal 手续费 never needs rounding.
const FEE_RATE: &str = "0.60%";
const FEE_PER_FEN_IN_1E5_YUAN: i64 = 6;

/// Bills older than this cannot be downloaded.
const KEPT_MONTHS: u32 = 3;

/// The generic "system error" of the platform, for `billErrors`.
const PLATFORM_SYSTEM_ERROR: i64 = -1;

/// Why no bill is served: v2's `{return_code: FAIL, return_msg, error_code}`.
struct Refusal {
    return_msg: &'static str,
    error_code: &'static str,
}

/// Documented `return_msg` (v2 error list, and `20002` as seen in answers).
const NO_BILL: Refusal = Refusal {
    return_msg: "No Bill Exist",
    error_code: "20002",
};
/// Documented `return_msg` (账单未生成); the error_code is inferred: the same as for "no
/// bill", so that a client must tell them apart by `return_msg` as the documentation does.
const NOT_GENERATED: Refusal = Refusal {
    return_msg: "Bill Creating",
    error_code: "20002",
};
/// Documented `return_msg` for a malformed parameter; that a date out of range gets it too,
/// and the error_code, are inferred.
const BAD_DATE: Refusal = Refusal {
    return_msg: "data format error",
    error_code: "20001",
};
const BAD_BILL_TYPE: Refusal = Refusal {
    return_msg: "invalid bill_type",
    error_code: "20001",
};
const MISSING_PARAMETER: Refusal = Refusal {
    return_msg: "missing parameter",
    error_code: "20001",
};
/// Inferred: the cloud environment is not bound to this sub-merchant.
const NOT_BOUND: Refusal = Refusal {
    return_msg: "受理关系不存在",
    error_code: "NOAUTH",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BillType {
    All,
    Success,
    Refund,
}

pub(crate) async fn download_bill(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, PlatformError> {
    if state.with_faults(|faults| faults.wechat.take_bill_error()) {
        return Err(PlatformError {
            errcode: PLATFORM_SYSTEM_ERROR,
            errmsg: "system error (injected by the sandbox)".into(),
        });
    }
    let request = envelope::parse_request(&body)?;
    let (date, bill_type) = match validate(&state, &request) {
        Ok(valid) => valid,
        Err(refusal) => return Ok(refused(refusal)),
    };
    let ready = match state.config.bills_ready {
        BillsReady::Immediately => true,
        BillsReady::Platform => Utc::now() >= generated_at(date),
    };
    if !ready || state.with_faults(|faults| faults.wechat.take_bill_not_ready()) {
        return Ok(refused(NOT_GENERATED));
    }
    let started = std::time::Instant::now();
    let mut entries = state.orders.bill_entries(date);
    entries.retain(|entry| entry.protocol == crate::wechat::orders::Protocol::Cloud);
    entries.retain(|entry| match bill_type {
        BillType::All => true,
        BillType::Success => entry.refund.is_none(),
        BillType::Refund => entry.refund.is_some(),
    });
    let (alterations, drops) = state.with_faults(|faults| {
        (
            faults.wechat.bill_alter_orders.clone(),
            faults.wechat.bill_drop_orders.clone(),
        )
    });
    entries.retain(|entry| !drops.contains(&entry.out_trade_no));
    if entries.is_empty() {
        return Ok(refused(NO_BILL));
    }
    for entry in &mut entries {
        if let Some(alteration) = alterations
            .iter()
            .find(|a| a.out_trade_no == entry.out_trade_no)
        {
            alter(entry, alteration);
        }
    }
    let (garble, totals_off) = state.with_faults(|faults| {
        (
            faults.wechat.take_bill_malformed_line(),
            faults.wechat.take_bill_totals_off(),
        )
    });
    let text = bill_text(
        entries,
        Garbling {
            first_line_amount: garble,
            settlement_total_off: totals_off,
        },
    );
    tracing::info!(
        %date,
        bytes = text.len(),
        built_ms = started.elapsed().as_millis(),
        garble,
        totals_off,
        "downloadbill"
    );
    Ok(envelope::relayed(Value::String(text)))
}

fn validate(
    state: &AppState,
    request: &Map<String, Value>,
) -> Result<(NaiveDate, BillType), Refusal> {
    let fields = Fields(request);
    let merchant = fields.text("sub_mch_id").map_err(|_| MISSING_PARAMETER)?;
    if merchant != state.config.merchant_id {
        return Err(NOT_BOUND);
    }
    let date = fields.text("bill_date").map_err(|_| MISSING_PARAMETER)?;
    let date = (date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()))
        .then(|| NaiveDate::parse_from_str(date, "%Y%m%d").ok())
        .flatten()
        .ok_or(BAD_DATE)?;
    let today = ids::utc_plus_8(Utc::now()).date_naive();
    let oldest = today
        .checked_sub_months(Months::new(KEPT_MONTHS))
        .unwrap_or(NaiveDate::MIN);
    if date > today || date < oldest {
        return Err(BAD_DATE);
    }
    let bill_type = match fields.optional_text("bill_type") {
        Ok(None) | Ok(Some("ALL")) => BillType::All,
        Ok(Some("SUCCESS")) => BillType::Success,
        Ok(Some("REFUND")) => BillType::Refund,
        _ => return Err(BAD_BILL_TYPE),
    };
    Ok((date, bill_type))
}

/// 10:00 China time on the day after `date`.
pub(crate) fn generated_at(date: NaiveDate) -> chrono::DateTime<Utc> {
    let next_day = date.checked_add_days(Days::new(1)).unwrap_or(date);
    let ten = NaiveTime::from_hms_opt(10, 0, 0).unwrap_or_default();
    let china = chrono::FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| unreachable!());
    next_day
        .and_time(ten)
        .and_local_timezone(china)
        .single()
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or_else(Utc::now)
}

fn refused(refusal: Refusal) -> Response {
    tracing::info!(return_msg = refusal.return_msg, "downloadbill refused");
    envelope::relayed(json!({
        "return_code": "FAIL",
        "return_msg": refusal.return_msg,
        "error_code": refusal.error_code,
    }))
}

pub(crate) fn alter(entry: &mut BillEntry, alteration: &BillAlteration) {
    if let Some(total_fee) = alteration.total_fee {
        entry.total_fee = total_fee;
    }
    if let Some(sub_mch_id) = &alteration.sub_mch_id {
        entry.sub_mch_id.clone_from(sub_mch_id);
    }
    if let Some(transaction_id) = &alteration.transaction_id {
        entry.transaction_id.clone_from(transaction_id);
    }
}

/// Faults that change the text after the lines are chosen.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Garbling {
    /// The first trade line's 应结订单金额 gets an `x`; the summary keeps the true total.
    pub first_line_amount: bool,
    /// 应结订单总金额 0.01 yuan too high.
    pub settlement_total_off: bool,
}

/// The bill: lines sorted by time (a payment before its refunds at the same second), the
/// summary computed from them. Every line ends with `\r\n`, as WeChat's do.
pub(crate) fn bill_text(mut entries: Vec<BillEntry>, garbling: Garbling) -> String {
    entries.sort_unstable_by(|a, b| {
        (&a.time, a.refund.is_some(), &a.out_trade_no, refund_no(a)).cmp(&(
            &b.time,
            b.refund.is_some(),
            &b.out_trade_no,
            refund_no(b),
        ))
    });
    let mut text = String::with_capacity(HEADER.len() + 320 * (entries.len() + 2));
    text.push_str(HEADER);
    text.push_str("\r\n");
    let mut totals = Totals::default();
    for (index, entry) in entries.iter().enumerate() {
        let line = Line::of(entry);
        totals.add(&line);
        let garble = garbling.first_line_amount && index == 0;
        line.write(entry, garble, &mut text);
    }
    if garbling.settlement_total_off {
        totals.settlement += 1;
    }
    text.push_str(SUMMARY_HEADER);
    text.push_str("\r\n");
    let _ = write!(
        text,
        "`{},`{},`{},`0.00,`{},`{},`{}\r\n",
        totals.trades,
        yuan(totals.settlement),
        yuan(totals.refund),
        fee_yuan(totals.fee),
        yuan(totals.order),
        yuan(totals.refund),
    );
    text
}

fn refund_no(entry: &BillEntry) -> &str {
    entry
        .refund
        .as_ref()
        .map_or("", |refund| refund.out_refund_no.as_str())
}

/// The amounts of one line, in fen (the fee in 1e-5 yuan, negative on a refund: the fee
/// is given back).
struct Line {
    settlement: i64,
    order: i64,
    refund: i64,
    fee: i64,
}

impl Line {
    fn of(entry: &BillEntry) -> Line {
        match &entry.refund {
            None => Line {
                settlement: entry.total_fee,
                order: entry.total_fee,
                refund: 0,
                fee: entry.total_fee * FEE_PER_FEN_IN_1E5_YUAN,
            },
            Some(refund) => Line {
                settlement: 0,
                order: 0,
                refund: refund.refund_fee,
                fee: -refund.refund_fee * FEE_PER_FEN_IN_1E5_YUAN,
            },
        }
    }

    fn write(&self, entry: &BillEntry, garble: bool, text: &mut String) {
        let (state, refund_id, out_refund_no, refund_type, refund_status) = match &entry.refund {
            None => ("SUCCESS", "0", "0", "", ""),
            Some(refund) => (
                "REFUND",
                refund.refund_id.as_str(),
                refund.out_refund_no.as_str(),
                "ORIGINAL",
                refund.status.as_str(),
            ),
        };
        let garbled = if garble { "x" } else { "" };
        let _ = write!(
            text,
            "`{time},`{appid},`{mch_id},`{sub_mch_id},`,`{transaction_id},\
             `{out_trade_no},`{openid},`JSAPI,`{state},`OTHERS,`CNY,`{settlement}{garbled},`0.00,\
             `{refund_id},`{out_refund_no},`{refund},`0.00,`{refund_type},`{refund_status},\
             `{body},`{attach},`{fee},`{FEE_RATE},`{order},`{refund},`\r\n",
            time = entry.time,
            appid = entry.appid,
            mch_id = entry.mch_id,
            sub_mch_id = entry.sub_mch_id,
            transaction_id = entry.transaction_id,
            out_trade_no = entry.out_trade_no,
            openid = entry.openid,
            settlement = yuan(self.settlement),
            refund = yuan(self.refund),
            body = entry.body,
            attach = entry.attach,
            fee = fee_yuan(self.fee),
            order = yuan(self.order),
        );
    }
}

#[derive(Default)]
struct Totals {
    trades: u64,
    settlement: i64,
    order: i64,
    refund: i64,
    fee: i64,
}

impl Totals {
    fn add(&mut self, line: &Line) {
        self.trades += 1;
        self.settlement += line.settlement;
        self.order += line.order;
        self.refund += line.refund;
        self.fee += line.fee;
    }
}

/// Fen as yuan with two decimals.
fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let fen = fen.unsigned_abs();
    format!("{sign}{}.{:02}", fen / 100, fen % 100)
}

/// 1e-5 yuan as yuan with five decimals.
fn fee_yuan(units: i64) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let units = units.unsigned_abs();
    format!("{sign}{}.{:05}", units / 100_000, units % 100_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::orders::{BillRefund, RefundStatus};

    fn entry(time: &str, no: &str, fee: i64, refund: Option<i64>) -> BillEntry {
        BillEntry {
            time: time.into(),
            out_trade_no: no.into(),
            transaction_id: format!("4200{no}"),
            openid: "oUser".into(),
            sub_mch_id: "1712734762".into(),
            total_fee: fee,
            body: "top-up".into(),
            attach: String::new(),
            refund: refund.map(|refund_fee| BillRefund {
                refund_id: format!("50{no}"),
                out_refund_no: format!("R{no}"),
                refund_fee,
                status: RefundStatus::Success,
            }),
            protocol: crate::wechat::orders::Protocol::Cloud,
            appid: crate::wechat::envelope::PROVIDER_APPID.into(),
            mch_id: crate::wechat::envelope::PROVIDER_MCH_ID.into(),
        }
    }

    #[test]
    fn amounts_are_yuan_with_fixed_decimals() {
        assert_eq!(yuan(1), "0.01");
        assert_eq!(yuan(1137), "11.37");
        assert_eq!(yuan(0), "0.00");
        assert_eq!(fee_yuan(1137 * 6), "0.06822");
        assert_eq!(fee_yuan(-6), "-0.00006");
    }

    #[test]
    fn lines_are_sorted_and_the_summary_adds_them_up() {
        let text = bill_text(
            vec![
                entry("2026-12-04 10:00:00", "B", 500, Some(200)),
                entry("2026-12-04 09:00:00", "B", 500, None),
                entry("2026-12-04 09:00:00", "A", 1137, None),
            ],
            Garbling::default(),
        );
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], HEADER);
        assert!(lines[1].contains("`A,"));
        assert!(lines[2].contains("`B,") && lines[2].contains("`SUCCESS,"));
        assert!(lines[3].contains("`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50B,`RB,`2.00,"));
        assert_eq!(lines[4], SUMMARY_HEADER);
        assert_eq!(lines[5], "`3,`16.37,`2.00,`0.00,`0.08622,`16.37,`2.00");
        assert_eq!(lines[6], "");
    }
}
