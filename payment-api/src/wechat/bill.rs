//! WeChat Pay's daily trade bill (v2 `downloadbill`, `bill_type` ALL), read line by line.
//!
//! The bill is text: a header, one line per payment or refund with every field prefixed by
//! a backtick, then a summary header and the summary line. Amounts are yuan, times China
//! time. Nothing here trusts the text: a line that cannot be read exactly goes to
//! [`TradeBill::malformed`] with the reason, never rounded or guessed, and reading never
//! panics, so that reconciliation can report what it could not check.

use chrono::{DateTime, Utc};
use shared::money::Fen;

/// What `downloadbill` answered for a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillDownload {
    Ready(TradeBill),
    /// `No Bill Exist`: no trade that day (or none WeChat will show us).
    NoBill,
    /// `Bill Creating`: not generated yet (from 09:00 China time the next day, 10:00 to be
    /// safe); ask again later.
    NotReady,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeBill {
    pub lines: Vec<BillLine>,
    pub malformed: Vec<MalformedLine>,
    pub summary: Option<BillSummary>,
    /// The bill as downloaded, for the record.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedLine {
    /// 1-based, counting every line of the text.
    pub line_no: usize,
    pub text: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillLineKind {
    Payment,
    Refund,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLine {
    pub line_no: usize,
    pub kind: BillLineKind,
    /// 交易时间: the payment's time, or for a refund line when the refund was made.
    pub traded_at: DateTime<Utc>,
    /// The merchant the line belongs to: 特约商户号, the sub-merchant a service provider
    /// (Cloud Hosting, or ours) acted for; for a direct merchant's own trades, where that
    /// column is `0`, 商户号.
    pub merchant_id: String,
    pub transaction_id: String,
    pub out_trade_no: String,
    pub openid: String,
    /// 交易状态: `SUCCESS` for a payment, `REFUND` for a refund line.
    pub trade_state: String,
    /// 应结订单金额 (0 on a refund line).
    pub settlement_fee: Fen,
    /// 订单金额 (0 on a refund line).
    pub order_fee: Fen,
    /// 微信退款单号; a payment line's `0` is `None`.
    pub refund_id: Option<String>,
    /// 商户退款单号; a payment line's `0` is `None`.
    pub out_refund_no: Option<String>,
    /// 退款金额 (0 on a payment line).
    pub refund_fee: Fen,
    /// 退款状态 (`SUCCESS`, `PROCESSING`, `REFUNDCLOSE`...); empty is `None`.
    pub refund_status: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillSummary {
    /// 总交易单数: payment and refund lines together.
    pub trades: u64,
    /// 应结订单总金额
    pub settlement_total: Fen,
    /// 退款总金额
    pub refund_total: Fen,
    /// 订单总金额
    pub order_total: Fen,
    /// 申请退款总金额
    pub refund_request_total: Fen,
}

/// The trade lines' columns as the documented bill names them, in its order.
const TRADE_COLUMNS: [&str; 27] = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
];

const SUMMARY_COLUMNS: [&str; 7] = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
];

/// Where each field we read sits, found by name in the header so that a column WeChat adds
/// or moves does not shift the others.
#[derive(Debug, Clone)]
struct TradeColumns {
    count: usize,
    traded_at: usize,
    mch_id: usize,
    merchant_id: usize,
    transaction_id: usize,
    out_trade_no: usize,
    openid: usize,
    trade_state: usize,
    settlement_fee: usize,
    coupon_fee: usize,
    refund_id: usize,
    out_refund_no: usize,
    refund_fee: usize,
    recharge_refund_fee: usize,
    refund_status: usize,
    service_fee: usize,
    order_fee: usize,
    refund_request_fee: usize,
}

impl TradeColumns {
    fn documented() -> Self {
        Self::from_names(&TRADE_COLUMNS).unwrap_or_else(|_| unreachable!())
    }

    fn from_names(names: &[&str]) -> Result<Self, String> {
        let at = |name: &str| {
            names
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| format!("the header has no {name} column"))
        };
        Ok(TradeColumns {
            count: names.len(),
            traded_at: at("交易时间")?,
            mch_id: at("商户号")?,
            merchant_id: at("特约商户号")?,
            transaction_id: at("微信订单号")?,
            out_trade_no: at("商户订单号")?,
            openid: at("用户标识")?,
            trade_state: at("交易状态")?,
            settlement_fee: at("应结订单金额")?,
            coupon_fee: at("代金券金额")?,
            refund_id: at("微信退款单号")?,
            out_refund_no: at("商户退款单号")?,
            refund_fee: at("退款金额")?,
            recharge_refund_fee: at("充值券退款金额")?,
            refund_status: at("退款状态")?,
            service_fee: at("手续费")?,
            order_fee: at("订单金额")?,
            refund_request_fee: at("申请退款金额")?,
        })
    }
}

#[derive(Debug, Clone)]
struct SummaryColumns {
    count: usize,
    trades: usize,
    settlement_total: usize,
    refund_total: usize,
    recharge_refund_total: usize,
    service_fee_total: usize,
    order_total: usize,
    refund_request_total: usize,
}

impl SummaryColumns {
    fn documented() -> Self {
        Self::from_names(&SUMMARY_COLUMNS).unwrap_or_else(|_| unreachable!())
    }

    fn from_names(names: &[&str]) -> Result<Self, String> {
        let at = |name: &str| {
            names
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| format!("the summary header has no {name} column"))
        };
        Ok(SummaryColumns {
            count: names.len(),
            trades: at("总交易单数")?,
            settlement_total: at("应结订单总金额")?,
            refund_total: at("退款总金额")?,
            recharge_refund_total: at("充值券退款总金额")?,
            service_fee_total: at("手续费总金额")?,
            order_total: at("订单总金额")?,
            refund_request_total: at("申请退款总金额")?,
        })
    }
}

/// Where the reader is in the bill.
enum Section {
    Header,
    Trades(TradeColumns),
    Summary(SummaryColumns),
    Done,
}

impl TradeBill {
    /// Reads a bill. Never panics: a line that cannot be read exactly is kept in
    /// `malformed` with why; a missing or unreadable summary is `None` plus a malformed
    /// entry. Lines may end with `\r\n` (as WeChat's do) or `\n`; blank lines are skipped.
    pub fn parse(text: &str) -> TradeBill {
        TradeBill::from_text(text.to_owned())
    }

    /// [`parse`](Self::parse), keeping the text it is given rather than a copy: a day's
    /// bill can be tens of megabytes.
    pub fn from_text(text: String) -> TradeBill {
        let mut bill = TradeBill::read(&text);
        bill.text = text;
        bill
    }

    fn read(text: &str) -> TradeBill {
        let mut bill = TradeBill {
            lines: Vec::new(),
            malformed: Vec::new(),
            summary: None,
            text: String::new(),
        };
        let mut section = Section::Header;
        let mut last_line_no = 0;
        for (index, raw) in text.split('\n').enumerate() {
            let line_no = index + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let line = if line_no == 1 {
                line.trim_start_matches('\u{feff}')
            } else {
                line
            };
            if line.trim().is_empty() {
                continue;
            }
            last_line_no = line_no;
            section = match section {
                Section::Header => {
                    if line.starts_with('`') {
                        bill.flag(line_no, line, "the bill does not start with its header");
                        let columns = TradeColumns::documented();
                        bill.read_trade(line_no, line, &columns);
                        Section::Trades(columns)
                    } else {
                        let names: Vec<&str> = line.split(',').collect();
                        match TradeColumns::from_names(&names) {
                            Ok(columns) => Section::Trades(columns),
                            Err(reason) => {
                                bill.flag(line_no, line, reason);
                                Section::Trades(TradeColumns::documented())
                            }
                        }
                    }
                }
                Section::Trades(columns) => {
                    if line.starts_with('`') {
                        bill.read_trade(line_no, line, &columns);
                        Section::Trades(columns)
                    } else if line.starts_with(SUMMARY_COLUMNS[0]) {
                        let names: Vec<&str> = line.split(',').collect();
                        match SummaryColumns::from_names(&names) {
                            Ok(columns) => Section::Summary(columns),
                            Err(reason) => {
                                bill.flag(line_no, line, reason);
                                Section::Summary(SummaryColumns::documented())
                            }
                        }
                    } else {
                        bill.flag(
                            line_no,
                            line,
                            "neither a trade line (`-prefixed fields) nor the summary header",
                        );
                        Section::Trades(columns)
                    }
                }
                Section::Summary(columns) => {
                    match read_summary(line, &columns) {
                        Ok(summary) => bill.summary = Some(summary),
                        Err(reason) => bill.flag(line_no, line, format!("summary line: {reason}")),
                    }
                    Section::Done
                }
                Section::Done => {
                    bill.flag(line_no, line, "text after the summary line");
                    Section::Done
                }
            };
        }
        let summary_missing = match section {
            Section::Header => Some("the bill is empty"),
            Section::Trades(_) => Some("no summary: the bill ends without its summary header"),
            Section::Summary(_) => Some("no summary line after the summary header"),
            Section::Done => None,
        };
        if let Some(reason) = summary_missing {
            bill.flag(last_line_no + 1, "", reason);
        }
        bill
    }

    fn read_trade(&mut self, line_no: usize, line: &str, columns: &TradeColumns) {
        match read_trade(line_no, line, columns) {
            Ok(trade) => self.lines.push(trade),
            Err(reason) => self.flag(line_no, line, reason),
        }
    }

    fn flag(&mut self, line_no: usize, line: &str, reason: impl Into<String>) {
        self.malformed.push(MalformedLine {
            line_no,
            text: line.to_owned(),
            reason: reason.into(),
        });
    }

    /// What the summary should say, from the lines read. 申请退款总金额 is taken as the sum
    /// of 退款金额: they differ only for refunds of coupon-paid orders, which this merchant
    /// does not take; if they ever differ, [`balances`](Self::balances) says no.
    pub fn totals_from_lines(&self) -> BillSummary {
        let total = |amount: fn(&BillLine) -> Fen| {
            let fen = self
                .lines
                .iter()
                .fold(0i64, |sum, line| sum.saturating_add(amount(line).get()));
            Fen::new(fen).unwrap_or(Fen::ZERO)
        };
        BillSummary {
            trades: self.lines.len() as u64,
            settlement_total: total(|line| line.settlement_fee),
            refund_total: total(|line| line.refund_fee),
            order_total: total(|line| line.order_fee),
            refund_request_total: total(|line| line.refund_fee),
        }
    }

    /// The bill is whole: a summary, no malformed line, and the summary agrees with the
    /// lines.
    pub fn balances(&self) -> bool {
        self.malformed.is_empty() && self.summary == Some(self.totals_from_lines())
    }
}

/// The fields of a backtick-prefixed line. Splitting on `` ,` `` rather than `,` keeps a
/// comma inside a field (a product name, our JSON `attach`) in its field.
fn fields(line: &str) -> Option<Vec<&str>> {
    line.strip_prefix('`')
        .map(|rest| rest.split(",`").collect())
}

fn field_count_error(line: &str, found: usize, expected: usize) -> String {
    let unticked = line
        .char_indices()
        .any(|(at, c)| c == ',' && !line[at + 1..].starts_with('`'));
    if found < expected && unticked {
        format!("{found} fields where the header has {expected}: a field without its leading `")
    } else {
        format!("{found} fields where the header has {expected}")
    }
}

fn read_trade(line_no: usize, line: &str, columns: &TradeColumns) -> Result<BillLine, String> {
    let fields = fields(line).ok_or("a trade line starts with `")?;
    if fields.len() != columns.count {
        return Err(field_count_error(line, fields.len(), columns.count));
    }
    let field = |at: usize| fields.get(at).copied().unwrap_or_default();
    let fen = |at: usize, name: &str| {
        Fen::parse_yuan(field(at)).map_err(|error| format!("{name}: {error}"))
    };
    let required = |at: usize, name: &str| {
        let value = field(at);
        if value.is_empty() {
            Err(format!("{name} is empty"))
        } else {
            Ok(value.to_owned())
        }
    };
    let filled = |at: usize| Some(field(at)).filter(|v| !v.is_empty() && *v != "0");

    let traded_at = china_time(field(columns.traded_at))
        .ok_or_else(|| format!("交易时间: {:?} is not a time", field(columns.traded_at)))?;
    let trade_state = required(columns.trade_state, "交易状态")?;
    let settlement_fee = fen(columns.settlement_fee, "应结订单金额")?;
    fen(columns.coupon_fee, "代金券金额")?;
    let refund_fee = fen(columns.refund_fee, "退款金额")?;
    fen(columns.recharge_refund_fee, "充值券退款金额")?;
    let order_fee = fen(columns.order_fee, "订单金额")?;
    fen(columns.refund_request_fee, "申请退款金额")?;
    signed_decimal(field(columns.service_fee))
        .then_some(())
        .ok_or_else(|| format!("手续费: {:?} is not an amount", field(columns.service_fee)))?;
    let refund_id = filled(columns.refund_id).map(str::to_owned);
    let out_refund_no = filled(columns.out_refund_no).map(str::to_owned);
    let kind = if trade_state == "REFUND"
        || refund_id.is_some()
        || out_refund_no.is_some()
        || refund_fee.get() > 0
    {
        BillLineKind::Refund
    } else {
        BillLineKind::Payment
    };
    Ok(BillLine {
        line_no,
        kind,
        traded_at,
        merchant_id: match field(columns.merchant_id) {
            "" | "0" => field(columns.mch_id),
            sub_merchant => sub_merchant,
        }
        .to_owned(),
        transaction_id: required(columns.transaction_id, "微信订单号")?,
        out_trade_no: required(columns.out_trade_no, "商户订单号")?,
        openid: field(columns.openid).to_owned(),
        trade_state,
        settlement_fee,
        order_fee,
        refund_id,
        out_refund_no,
        refund_fee,
        refund_status: Some(field(columns.refund_status))
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
    })
}

fn read_summary(line: &str, columns: &SummaryColumns) -> Result<BillSummary, String> {
    let fields = fields(line).ok_or("the summary line's fields start with `")?;
    if fields.len() != columns.count {
        return Err(field_count_error(line, fields.len(), columns.count));
    }
    let field = |at: usize| fields.get(at).copied().unwrap_or_default();
    let fen = |at: usize, name: &str| {
        Fen::parse_yuan(field(at)).map_err(|error| format!("{name}: {error}"))
    };
    let trades = field(columns.trades);
    let trades = trades
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| trades.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| format!("总交易单数: {trades:?} is not a count"))?;
    fen(columns.recharge_refund_total, "充值券退款总金额")?;
    if !signed_decimal(field(columns.service_fee_total)) {
        return Err(format!(
            "手续费总金额: {:?} is not an amount",
            field(columns.service_fee_total)
        ));
    }
    Ok(BillSummary {
        trades,
        settlement_total: fen(columns.settlement_total, "应结订单总金额")?,
        refund_total: fen(columns.refund_total, "退款总金额")?,
        order_total: fen(columns.order_total, "订单总金额")?,
        refund_request_total: fen(columns.refund_request_total, "申请退款总金额")?,
    })
}

/// 手续费 has five decimals and is negative on refund lines (the fee given back); it is
/// checked, not used.
fn signed_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && digits(fraction)
}

/// 交易时间, `yyyy-MM-dd HH:mm:ss` in China time.
fn china_time(text: &str) -> Option<DateTime<Utc>> {
    if text.len() != 19 {
        return None;
    }
    super::states::china_time_as(text, "%Y-%m-%d %H:%M:%S")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
    const SUMMARY_HEADER: &str =
        "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";
    /// The documented example's trade line and summary, verbatim.
    const DOCUMENTED_LINE: &str = "`2022-03-21 13:51:31,`wxfdc955f7104ad557,`180023671,`176531292,`,`420000612032130748613220688,`2021WERUN1647840687637,`oZWaCKXip5njeEiloC4oeOV1TTsk,`JSAPI,`SUCCESS,`OTHERS,`CNY,`0.01,`0.00,`0,`0,`0.00,`0.00,`,`,`微信云托管支付测试,`,`0.00000,`0.90%,`0.01,`0.00,`";
    const DOCUMENTED_SUMMARY: &str = "`12,`0.06,`0.06,`0.00,`0.00000,`0.06,`0.06";

    fn payment(no: u32, time: &str) -> String {
        format!("`{time},`wxfdc955f7104ad557,`180023671,`176531292,`,`42000061203213074861322{no:04},`ORDER{no},`oZWaCKXip5njeEiloC4oeOV1TTsk,`JSAPI,`SUCCESS,`OTHERS,`CNY,`0.01,`0.00,`0,`0,`0.00,`0.00,`,`,`微信云托管支付测试,`,`0.00000,`0.90%,`0.01,`0.00,`")
    }

    fn refund(no: u32, time: &str, status: &str) -> String {
        format!("`{time},`wxfdc955f7104ad557,`180023671,`176531292,`,`42000061203213074861322{no:04},`ORDER{no},`oZWaCKXip5njeEiloC4oeOV1TTsk,`JSAPI,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`5030030701202203210{no:04}0000000,`REFUND{no},`0.01,`0.00,`ORIGINAL,`{status},`微信云托管支付测试,`,`-0.00000,`0.90%,`0.00,`0.01,`")
    }

    #[test]
    fn a_direct_merchants_line_belongs_to_its_own_merchant_number() {
        let through_provider = payment(1, "2022-03-21 13:51:31");
        let direct = through_provider.replace("`176531292,", "`0,");
        let text = format!("{HEADER}\n{through_provider}\n{direct}\n{SUMMARY_HEADER}\n`2,`0.02,`0.00,`0.00,`0.00000,`0.02,`0.00\n");
        let bill = TradeBill::parse(&text);
        let merchants: Vec<&str> = bill.lines.iter().map(|l| l.merchant_id.as_str()).collect();
        assert_eq!(merchants, ["176531292", "180023671"]);
    }

    /// Six payments of 0.01 and their six refunds: what the documented summary adds up to.
    fn documented_day(end: &str) -> String {
        let mut lines = vec![HEADER.to_owned()];
        for no in 1..=6 {
            lines.push(payment(no, &format!("2022-03-21 13:5{no}:31")));
        }
        for no in 1..=6 {
            lines.push(refund(no, &format!("2022-03-21 14:0{no}:00"), "SUCCESS"));
        }
        lines.push(SUMMARY_HEADER.to_owned());
        lines.push(DOCUMENTED_SUMMARY.to_owned());
        lines.join(end) + end
    }

    fn bill_with(trade_lines: &[String]) -> String {
        let mut lines = vec![HEADER.to_owned()];
        lines.extend(trade_lines.iter().cloned());
        lines.push(SUMMARY_HEADER.to_owned());
        lines.push(DOCUMENTED_SUMMARY.to_owned());
        lines.join("\r\n") + "\r\n"
    }

    fn fen(n: i64) -> Fen {
        Fen::new(n).unwrap()
    }

    #[test]
    fn the_documented_example_reads_field_by_field() {
        let text = [HEADER, DOCUMENTED_LINE, SUMMARY_HEADER, DOCUMENTED_SUMMARY].join("\r\n");
        let bill = TradeBill::parse(&text);
        assert_eq!(bill.malformed, vec![]);
        assert_eq!(bill.text, text);
        assert_eq!(
            bill.lines,
            vec![BillLine {
                line_no: 2,
                kind: BillLineKind::Payment,
                traded_at: "2022-03-21T05:51:31Z".parse().unwrap(),
                merchant_id: "176531292".into(),
                transaction_id: "420000612032130748613220688".into(),
                out_trade_no: "2021WERUN1647840687637".into(),
                openid: "oZWaCKXip5njeEiloC4oeOV1TTsk".into(),
                trade_state: "SUCCESS".into(),
                settlement_fee: fen(1),
                order_fee: fen(1),
                refund_id: None,
                out_refund_no: None,
                refund_fee: fen(0),
                refund_status: None,
            }]
        );
        assert_eq!(
            bill.summary,
            Some(BillSummary {
                trades: 12,
                settlement_total: fen(6),
                refund_total: fen(6),
                order_total: fen(6),
                refund_request_total: fen(6),
            })
        );
        // The documentation shows one of its twelve lines: the summary cannot agree.
        assert!(!bill.balances());
    }

    #[test]
    fn a_whole_day_of_payments_and_refunds_balances() {
        let bill = TradeBill::parse(&documented_day("\r\n"));
        assert_eq!(bill.malformed, vec![]);
        assert_eq!(bill.lines.len(), 12);
        assert_eq!(bill.totals_from_lines(), bill.summary.unwrap());
        assert!(bill.balances());
    }

    #[test]
    fn crlf_and_lf_read_the_same() {
        let crlf = TradeBill::parse(&documented_day("\r\n"));
        let lf = TradeBill::parse(&documented_day("\n"));
        assert_eq!(crlf.lines, lf.lines);
        assert_eq!(crlf.summary, lf.summary);
        assert!(lf.balances());
        // No field keeps a stray \r.
        assert_eq!(crlf.lines[0].out_trade_no, "ORDER1");
    }

    #[test]
    fn refund_lines_carry_the_refund() {
        let bill = TradeBill::parse(&documented_day("\r\n"));
        let refund = &bill.lines[6];
        assert_eq!(refund.kind, BillLineKind::Refund);
        assert_eq!(refund.line_no, 8);
        assert_eq!(refund.trade_state, "REFUND");
        assert_eq!(refund.out_trade_no, "ORDER1");
        assert_eq!(refund.out_refund_no.as_deref(), Some("REFUND1"));
        assert_eq!(
            refund.refund_id.as_deref(),
            Some("503003070120220321000010000000")
        );
        assert_eq!(refund.refund_fee, fen(1));
        assert_eq!(refund.settlement_fee, fen(0));
        assert_eq!(refund.order_fee, fen(0));
        assert_eq!(refund.refund_status.as_deref(), Some("SUCCESS"));
        assert_eq!(
            refund.traded_at,
            "2022-03-21T06:01:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let payment = &bill.lines[0];
        assert_eq!(payment.kind, BillLineKind::Payment);
        assert_eq!(payment.refund_id, None);
        assert_eq!(payment.refund_status, None);
    }

    #[test]
    fn a_refund_is_known_by_its_fields_even_without_the_refund_state() {
        let line = refund(1, "2022-03-21 14:00:00", "PROCESSING").replace("`REFUND,", "`SUCCESS,");
        let bill = TradeBill::parse(&bill_with(&[line]));
        assert_eq!(bill.lines[0].kind, BillLineKind::Refund);
        assert_eq!(bill.lines[0].refund_status.as_deref(), Some("PROCESSING"));
    }

    #[test]
    fn a_comma_inside_a_field_stays_in_it() {
        let line = payment(1, "2022-03-21 13:51:31").replace(
            "`微信云托管支付测试,`,",
            "`话费,充值,`{\"orderNumber\":\"ORD1\",\"phoneNumber\":\"88616600\"},",
        );
        let bill = TradeBill::parse(&bill_with(&[line]));
        assert_eq!(bill.malformed, vec![]);
        assert_eq!(bill.lines[0].out_trade_no, "ORDER1");
    }

    /// The one trade line of a bill, garbled by `garble`, is malformed for `reason`.
    fn malformed_because(garble: impl Fn(String) -> String, reason: &str) {
        let line = garble(payment(1, "2022-03-21 13:51:31"));
        let bill = TradeBill::parse(&bill_with(&[
            line.clone(),
            payment(2, "2022-03-21 13:52:31"),
        ]));
        assert_eq!(bill.lines.len(), 1, "{line}");
        assert_eq!(bill.lines[0].out_trade_no, "ORDER2");
        assert_eq!(bill.malformed.len(), 1, "{:?}", bill.malformed);
        let malformed = &bill.malformed[0];
        assert_eq!(malformed.line_no, 2);
        assert_eq!(malformed.text, line);
        assert!(
            malformed.reason.contains(reason),
            "{:?} should say {reason:?}",
            malformed.reason
        );
        assert!(bill.summary.is_some());
        assert!(!bill.balances());
    }

    #[test]
    fn a_field_without_its_backtick_is_malformed() {
        malformed_because(
            |line| line.replacen(",`wxfdc955f7104ad557", ",wxfdc955f7104ad557", 1),
            "without its leading `",
        );
        malformed_because(|line| line.replacen('`', "", 1), "neither a trade line");
    }

    #[test]
    fn a_wrong_number_of_fields_is_malformed() {
        malformed_because(|line| line + ",`extra", "28 fields where the header has 27");
        malformed_because(
            |line| line.replacen(",`JSAPI", "", 1),
            "26 fields where the header has 27",
        );
    }

    #[test]
    fn a_bad_amount_is_malformed_never_rounded() {
        malformed_because(|line| line.replacen("`0.01,", "`1.0x,", 1), "应结订单金额");
        malformed_because(
            |line| line.replacen("`0.01,", "`0.011,", 1),
            "not a whole number of fen",
        );
        malformed_because(|line| line.replacen("`0.01,", "`-0.01,", 1), "应结订单金额");
        malformed_because(|line| line.replacen("`0.01,", "`,", 1), "应结订单金额");
        malformed_because(
            |line| line.replacen("`0.00,`0,", "`O.00,`0,", 1),
            "代金券金额",
        );
        malformed_because(|line| line.replacen("`0.00000,", "`0.0000x,", 1), "手续费");
        malformed_because(
            |line| line.replace("`0.90%,`0.01,", "`0.90%,`1e-2,"),
            "订单金额",
        );
    }

    #[test]
    fn a_bad_time_is_malformed() {
        malformed_because(
            |line| line.replacen("2022-03-21 13:51:31", "2022-03-32 13:51:31", 1),
            "交易时间",
        );
        malformed_because(
            |line| line.replacen("2022-03-21 13:51:31", "20220321135131", 1),
            "交易时间",
        );
        malformed_because(
            |line| line.replacen("2022-03-21 13:51:31", "2022-03-21 13:51", 1),
            "交易时间",
        );
        malformed_because(
            |line| line.replacen("2022-03-21 13:51:31", "2022-03-21T13:51:31", 1),
            "交易时间",
        );
    }

    #[test]
    fn a_line_without_its_order_numbers_is_malformed() {
        malformed_because(
            |line| line.replacen("`ORDER1,", "`,", 1),
            "商户订单号 is empty",
        );
        malformed_because(
            |line| line.replacen("`420000612032130748613220001,", "`,", 1),
            "微信订单号 is empty",
        );
    }

    #[test]
    fn a_missing_summary_is_none_and_malformed() {
        let day = documented_day("\r\n");
        let without_summary_line = day.replace(&format!("{DOCUMENTED_SUMMARY}\r\n"), "");
        let without_summary = without_summary_line.replace(&format!("{SUMMARY_HEADER}\r\n"), "");
        for (text, reason) in [
            (without_summary_line, "no summary line"),
            (without_summary, "no summary"),
        ] {
            let bill = TradeBill::parse(&text);
            assert_eq!(bill.summary, None);
            assert_eq!(bill.lines.len(), 12);
            assert_eq!(bill.malformed.len(), 1);
            assert!(
                bill.malformed[0].reason.contains(reason),
                "{:?}",
                bill.malformed
            );
            assert!(!bill.balances());
        }
    }

    #[test]
    fn a_garbled_summary_is_none_and_malformed() {
        for garbled in [
            "`12,`0.06,`0.06,`0.00,`0.00000,`0.06",
            "`12,`0.0x,`0.06,`0.00,`0.00000,`0.06,`0.06",
            "`1 2,`0.06,`0.06,`0.00,`0.00000,`0.06,`0.06",
            "12,0.06,0.06,0.00,0.00000,0.06,0.06",
        ] {
            let text = documented_day("\n").replace(DOCUMENTED_SUMMARY, garbled);
            let bill = TradeBill::parse(&text);
            assert_eq!(bill.summary, None, "{garbled}");
            assert_eq!(bill.malformed.len(), 1, "{garbled}");
            assert_eq!(bill.malformed[0].line_no, 15);
            assert!(bill.malformed[0].reason.starts_with("summary line"));
            assert!(!bill.balances());
        }
    }

    #[test]
    fn a_summary_that_disagrees_with_the_lines_does_not_balance() {
        let text = documented_day("\r\n").replace("`12,`0.06,", "`12,`0.07,");
        let bill = TradeBill::parse(&text);
        assert_eq!(bill.malformed, vec![]);
        assert_eq!(bill.summary.unwrap().settlement_total, fen(7));
        assert_eq!(bill.totals_from_lines().settlement_total, fen(6));
        assert!(!bill.balances());
    }

    #[test]
    fn trailing_blank_lines_are_harmless_but_trailing_text_is_not() {
        let bill = TradeBill::parse(&(documented_day("\r\n") + "\r\n\r\n\n  \r\n"));
        assert_eq!(bill.malformed, vec![]);
        assert!(bill.balances());

        let bill = TradeBill::parse(&(documented_day("\r\n") + "\r\nsomething else\r\n"));
        assert_eq!(bill.malformed.len(), 1);
        assert_eq!(bill.malformed[0].line_no, 17);
        assert!(!bill.balances());
    }

    #[test]
    fn a_bill_without_its_header_is_read_but_flagged() {
        let text = documented_day("\n").replacen(&format!("{HEADER}\n"), "", 1);
        let bill = TradeBill::parse(&text);
        assert_eq!(bill.lines.len(), 12);
        assert_eq!(bill.malformed.len(), 1);
        assert!(bill.malformed[0].reason.contains("header"));
        assert!(!bill.balances());
    }

    #[test]
    fn columns_are_found_by_name() {
        // WeChat adds a column at the end: every field we read stays where it was named.
        let text = documented_day("\n")
            .replace(HEADER, &format!("{HEADER},新列"))
            .replace(",`\n", ",`,`x\n");
        let bill = TradeBill::parse(&text);
        assert_eq!(bill.malformed, vec![]);
        assert!(bill.balances());
        assert_eq!(bill.lines[0].order_fee, fen(1));
    }

    #[test]
    fn empty_and_odd_texts_are_malformed_not_fatal() {
        for text in [
            "",
            "\r\n",
            "\u{feff}",
            "交易时间",
            "`",
            "``",
            ",,,",
            "总交易单数\n`",
        ] {
            let bill = TradeBill::parse(text);
            assert!(bill.summary.is_none(), "{text:?}");
            assert!(!bill.malformed.is_empty(), "{text:?}");
            assert!(!bill.balances(), "{text:?}");
        }
    }

    /// A small deterministic generator: the parser must survive anything.
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn parse_never_panics_on_garbage() {
        let good = documented_day("\r\n");
        let alphabet: Vec<char> = "`,.\r\n0123456789-: x交易时间总汇\u{feff}é%REFUND"
            .chars()
            .collect();
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        for round in 0..3_000 {
            let text: String = if round % 2 == 0 {
                // Pure noise.
                (0..noise.below(400))
                    .map(|_| alphabet[noise.below(alphabet.len())])
                    .collect()
            } else {
                // A good bill with a few characters changed, cut or inserted.
                let mut chars: Vec<char> = good.chars().collect();
                for _ in 0..1 + noise.below(6) {
                    let at = noise.below(chars.len());
                    match noise.below(3) {
                        0 => chars[at] = alphabet[noise.below(alphabet.len())],
                        1 => {
                            chars.remove(at);
                        }
                        _ => chars.insert(at, alphabet[noise.below(alphabet.len())]),
                    }
                }
                chars.into_iter().collect()
            };
            let bill = TradeBill::parse(&text);
            let _ = bill.totals_from_lines();
            if bill.balances() {
                assert!(bill.summary.is_some());
            }
        }
    }
}
