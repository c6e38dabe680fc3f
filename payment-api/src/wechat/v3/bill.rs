//! The trade bill through APIv3: a signed request for a ticket (`hash_value`,
//! `download_url`), then the file, whose answer is never signed: its SHA-1 (over the
//! un-gzipped bytes) is what vouches for it.

use std::io::Read;

use aws_lc_rs::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY};
use flate2::read::MultiGzDecoder;
use serde::Deserialize;

use crate::wechat::{BillDownload, TradeBill, WechatError};

/// A bill larger than this is not ours to read (a busy day is tens of megabytes).
const MAX_BILL_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BillTicket {
    pub hash_type: String,
    pub hash_value: String,
    pub download_url: String,
}

/// Refusals of `tradebill` that are answers, not failures (as the cloud client reads
/// `No Bill Exist` and `Bill Creating`).
pub(crate) fn refusal(code: &str) -> Option<BillDownload> {
    match code {
        "NO_STATEMENT_EXIST" => Some(BillDownload::NoBill),
        "STATEMENT_CREATING" => Some(BillDownload::NotReady),
        _ => None,
    }
}

/// The downloaded bytes (gzip or plain), checked against the ticket's hash, read.
pub(crate) fn read(ticket: &BillTicket, bytes: &[u8]) -> Result<BillDownload, WechatError> {
    if !ticket.hash_type.eq_ignore_ascii_case("SHA1") {
        return Err(WechatError::Platform(format!(
            "tradebill: hash_type {:?} is not SHA1",
            ticket.hash_type
        )));
    }
    let plain = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        MultiGzDecoder::new(bytes)
            .take(MAX_BILL_BYTES + 1)
            .read_to_end(&mut plain)
            .map_err(|e| WechatError::Platform(format!("bill download: not gzip: {e}")))?;
        plain
    } else {
        bytes.to_vec()
    };
    if plain.len() as u64 > MAX_BILL_BYTES {
        return Err(WechatError::Platform(
            "bill download: larger than 512 MiB".into(),
        ));
    }
    let sha1: String = digest(&SHA1_FOR_LEGACY_USE_ONLY, &plain)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !sha1.eq_ignore_ascii_case(ticket.hash_value.trim()) {
        return Err(WechatError::Platform(
            "bill download: SHA-1 differs from the ticket's hash_value (altered or incomplete)"
                .into(),
        ));
    }
    let text = String::from_utf8(plain)
        .map_err(|_| WechatError::Platform("bill download: not UTF-8 text".into()))?;
    Ok(BillDownload::Ready(TradeBill::from_text(text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    const BILL: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n\
`2022-03-21 13:51:31,`wxfdc955f7104ad557,`180023671,`0,`,`420000612032130748613220688,`ORD1647840687637ABCDEFGH,`oZWaCKXip5njeEiloC4oeOV1TTsk,`JSAPI,`SUCCESS,`OTHERS,`CNY,`0.01,`0.00,`0,`0,`0.00,`0.00,`,`,`话费充值,`,`0.00000,`0.60%,`0.01,`0.00,`\r\n\
总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n\
`1,`0.01,`0.00,`0.00,`0.00000,`0.01,`0.00\r\n";

    fn ticket(text: &str) -> BillTicket {
        BillTicket {
            hash_type: "SHA1".into(),
            hash_value: digest(&SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes())
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            download_url: String::new(),
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn the_hash_is_over_the_unzipped_bill() {
        for bytes in [BILL.as_bytes().to_vec(), gzip(BILL.as_bytes())] {
            match read(&ticket(BILL), &bytes).unwrap() {
                BillDownload::Ready(bill) => {
                    assert_eq!(bill.lines.len(), 1, "{:?}", bill.malformed);
                    assert!(bill.balances());
                }
                other => panic!("{other:?}"),
            }
        }
        let altered = BILL.replace("0.01,`0.00,`0,", "0.02,`0.00,`0,");
        assert!(matches!(
            read(&ticket(BILL), altered.as_bytes()),
            Err(WechatError::Platform(_))
        ));
        assert!(matches!(
            read(&ticket(BILL), &gzip(altered.as_bytes())),
            Err(WechatError::Platform(_))
        ));
        let mut md5 = ticket(BILL);
        md5.hash_type = "MD5".into();
        assert!(read(&md5, BILL.as_bytes()).is_err());
    }

    #[test]
    fn refusals_are_answers() {
        assert_eq!(refusal("NO_STATEMENT_EXIST"), Some(BillDownload::NoBill));
        assert_eq!(refusal("STATEMENT_CREATING"), Some(BillDownload::NotReady));
        assert_eq!(refusal("PARAM_ERROR"), None);
    }
}
