//! `GET /v3/bill/tradebill` hands out a 30-second download URL and the SHA1 of the bill;
//! `GET /v3/billdownload/file?token=…` serves the bytes (gzipped when asked), unsigned.
//! The text and the bill faults are the open interface's (`wechat::bill`), over the
//! APIv3 orders only.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{Months, NaiveDate, Utc};
use serde_json::json;

use super::error::V3Error;
use super::merchant::Registered;
use crate::config::BillsReady;
use crate::ids;
use crate::state::AppState;
use crate::sync::lock;
use crate::wechat::bill::{alter, bill_text, generated_at, Garbling};
use crate::wechat::orders::Protocol;

pub(crate) const FILE_PATH: &str = "/v3/billdownload/file";
/// How long a download URL works (older pages say 30 s, newer 5 min: the stricter one).
const URL_LIFETIME: Duration = Duration::from_secs(30);
const KEPT_MONTHS: u32 = 3;

/// Bills handed out and not yet expired, by token.
#[derive(Default)]
pub(crate) struct BillFiles(Mutex<HashMap<String, BillFile>>);

struct BillFile {
    bytes: Vec<u8>,
    gzip: bool,
    mchid: String,
    issued: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BillType {
    All,
    Success,
    Refund,
}

pub(crate) async fn trade_bill(
    State(state): State<AppState>,
    Extension(merchant): Extension<Arc<Registered>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, V3Error> {
    if state.with_faults(|faults| faults.wechat.take_bill_error()) {
        return Err(V3Error::system_error());
    }
    let date = query
        .get("bill_date")
        .filter(|date| date.len() == 10)
        .and_then(|date| NaiveDate::parse_from_str(date, "%Y-%m-%d").ok())
        .ok_or_else(|| V3Error::param("bill_date须为YYYY-MM-DD"))?;
    let today = ids::utc_plus_8(Utc::now()).date_naive();
    let oldest = today
        .checked_sub_months(Months::new(KEPT_MONTHS))
        .unwrap_or(NaiveDate::MIN);
    if date > today || date < oldest {
        return Err(V3Error::param("bill_date仅支持三个月内的日期"));
    }
    let bill_type = match query.get("bill_type").map(String::as_str) {
        None | Some("ALL") => BillType::All,
        Some("SUCCESS") => BillType::Success,
        Some("REFUND") => BillType::Refund,
        Some(_) => return Err(V3Error::param("bill_type取值错误")),
    };
    let gzip = match query.get("tar_type").map(String::as_str) {
        None => false,
        Some("GZIP") => true,
        Some(_) => return Err(V3Error::param("tar_type仅支持GZIP")),
    };
    if let Some(sub_mchid) = query.get("sub_mchid") {
        if !merchant.is_partner() || *sub_mchid != merchant.merchant.mchid {
            return Err(V3Error::no_auth("特约商户号未授权服务商"));
        }
    }
    let ready = match state.config.bills_ready {
        BillsReady::Immediately => true,
        BillsReady::Platform => Utc::now() >= generated_at(date),
    };
    if !ready || state.with_faults(|faults| faults.wechat.take_bill_not_ready()) {
        return Err(V3Error::new(
            StatusCode::BAD_REQUEST,
            "STATEMENT_CREATING",
            "账单生成中",
        ));
    }
    let text = bill(&state, date, bill_type).ok_or_else(|| {
        V3Error::new(
            StatusCode::BAD_REQUEST,
            "NO_STATEMENT_EXIST",
            "请求的账单文件不存在",
        )
    })?;
    let hash_value = sha1_hex(text.as_bytes());
    let bytes = if gzip {
        gzipped(text.as_bytes())
    } else {
        text.into_bytes()
    };
    let token = ids::alphanumeric(40);
    {
        let mut files = lock(&state.v3.bills.0);
        files.retain(|_, file| file.issued.elapsed() <= URL_LIFETIME);
        files.insert(
            token.clone(),
            BillFile {
                bytes,
                gzip,
                mchid: merchant.signing_mchid().to_owned(),
                issued: Instant::now(),
            },
        );
    }
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("127.0.0.1");
    let tartype = if gzip { "&tartype=gzip" } else { "" };
    tracing::info!(%date, gzip, "APIv3 tradebill");
    Ok(Json(json!({
        "hash_type": "SHA1",
        "hash_value": hash_value,
        "download_url": format!("http://{host}{FILE_PATH}?token={token}{tartype}"),
    }))
    .into_response())
}

/// The text for the APIv3 orders of `date`, with the bill faults; `None` for no lines.
fn bill(state: &AppState, date: NaiveDate, bill_type: BillType) -> Option<String> {
    let mut entries = state.orders.bill_entries(date);
    entries.retain(|entry| {
        entry.protocol == Protocol::ApiV3
            && match bill_type {
                BillType::All => true,
                BillType::Success => entry.refund.is_none(),
                BillType::Refund => entry.refund.is_some(),
            }
    });
    let (alterations, drops) = state.with_faults(|faults| {
        (
            faults.wechat.bill_alter_orders.clone(),
            faults.wechat.bill_drop_orders.clone(),
        )
    });
    entries.retain(|entry| !drops.contains(&entry.out_trade_no));
    if entries.is_empty() {
        return None;
    }
    for entry in &mut entries {
        if let Some(alteration) = alterations
            .iter()
            .find(|a| a.out_trade_no == entry.out_trade_no)
        {
            alter(entry, alteration);
        }
    }
    let (first_line_amount, settlement_total_off) = state.with_faults(|faults| {
        (
            faults.wechat.take_bill_malformed_line(),
            faults.wechat.take_bill_totals_off(),
        )
    });
    Some(bill_text(
        entries,
        Garbling {
            first_line_amount,
            settlement_total_off,
        },
    ))
}

pub(crate) async fn download(
    State(state): State<AppState>,
    Extension(merchant): Extension<Arc<Registered>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, V3Error> {
    let token = query.get("token").map(String::as_str).unwrap_or_default();
    let files = lock(&state.v3.bills.0);
    let file = files
        .get(token)
        .filter(|file| file.issued.elapsed() <= URL_LIFETIME)
        .ok_or_else(|| V3Error::invalid_request("下载链接已失效，请重新申请账单"))?;
    if file.mchid != merchant.signing_mchid() {
        return Err(V3Error::no_auth("下载账单的商户号与申请账单的商户号不一致"));
    }
    let content_type = if file.gzip {
        "application/x-gzip"
    } else {
        "text/plain; charset=utf-8"
    };
    Ok(([(header::CONTENT_TYPE, content_type)], file.bytes.clone()).into_response())
}

fn sha1_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn gzipped(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}
