//! PLACEHOLDER until the bill branch lands: the agreed types only.
use chrono::{DateTime, Utc};
use shared::money::Fen;

use super::{WechatError, WechatPay};

pub enum BillDownload {
    Ready(TradeBill),
    NoBill,
    NotReady,
}
pub struct TradeBill {
    pub lines: Vec<BillLine>,
    pub malformed: Vec<MalformedLine>,
    pub summary: Option<BillSummary>,
    pub text: String,
}
pub struct MalformedLine {
    pub line_no: usize,
    pub text: String,
    pub reason: String,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillLineKind {
    Payment,
    Refund,
}
pub struct BillLine {
    pub line_no: usize,
    pub kind: BillLineKind,
    pub traded_at: DateTime<Utc>,
    pub sub_mch_id: String,
    pub transaction_id: String,
    pub out_trade_no: String,
    pub openid: String,
    pub trade_state: String,
    pub settlement_fee: Fen,
    pub order_fee: Fen,
    pub refund_id: Option<String>,
    pub out_refund_no: Option<String>,
    pub refund_fee: Fen,
    pub refund_status: Option<String>,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillSummary {
    pub trades: u64,
    pub settlement_total: Fen,
    pub refund_total: Fen,
    pub order_total: Fen,
    pub refund_request_total: Fen,
}
impl TradeBill {
    pub fn parse(text: &str) -> TradeBill {
        TradeBill {
            lines: vec![],
            malformed: vec![],
            summary: None,
            text: text.to_owned(),
        }
    }
    pub fn totals_from_lines(&self) -> BillSummary {
        BillSummary {
            trades: 0,
            settlement_total: Fen::new(0).unwrap(),
            refund_total: Fen::new(0).unwrap(),
            order_total: Fen::new(0).unwrap(),
            refund_request_total: Fen::new(0).unwrap(),
        }
    }
    pub fn balances(&self) -> bool {
        false
    }
}
impl WechatPay {
    pub async fn download_bill(
        &self,
        _date: chrono::NaiveDate,
    ) -> Result<BillDownload, WechatError> {
        Ok(BillDownload::NotReady)
    }
}
