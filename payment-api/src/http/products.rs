//! What a number can buy, and a postpaid number's bill: Unitel's answers as received, as
//! the mini-program has always read them, with this project's yuan prices added to each
//! product (`priceRmb`, `priceFen`) and to the bill (`totalUnpaidRmb`, `totalUnpaidFen`).
//! Each answer is kept a while per number (`UNITEL_LOOKUP_CACHE_MS`); only a caller the
//! gateway vouches for may ask, within the lookup limits.

use std::future::Future;
use std::net::IpAddr;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use shared::money::{price_in_fen, Mnt, MntPerYuan};
use shared::order::Msisdn;
use shared::unitel::UnitelError;
use utoipa::ToSchema;

use super::envelope::Created;
use super::error::unitel_error;
use super::error::ApiError;
use super::exchange_rate::rate_number;
use super::extractor::{ClientAddress, CurrentUser};
use super::json::ApiJson;
use super::legacy_input::LegacyBody;
use super::params::parse_msisdn;
use crate::context::ApiContext;
use crate::rate_limit::Route;
use crate::store::rates;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/unitel/products/services", post(services))
        .route("/unitel/postpaid-bill", post(postpaid_bill))
}

/// `{msisdn, info}`: no other field.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ServicesRequest {
    /// 8-digit Unitel number.
    #[schema(example = "88616609", pattern = r"^[1-9][0-9]{7}$")]
    msisdn: String,
    /// Unitel's tariff-detail switch, passed on as given: the string "0" or "1".
    #[schema(example = "1", pattern = r"^[01]$")]
    info: String,
}

/// Unitel's `servicetype` answer as received (`result`, `code`, `msg`, `servicetype`,
/// `name`, `billtype`, `service: {cards: {day, noday, special}, data: {data, days,
/// entertainment}}`...), each product with `priceRmb` (yuan, as a string) and `priceFen`
/// added, and `exchangeRate` (tugrik per yuan) at the top.
#[derive(ToSchema)]
#[schema(value_type = Object)]
#[allow(dead_code)]
pub struct ServicesAnswer(Value);

/// Products Unitel sells to this number (they depend on its tariff), priced in yuan.
#[utoipa::path(post, path = "/unitel/products/services", tag = "products", security(("wechat_identity" = []), ("session_token" = [])),
    request_body = ServicesRequest,
    responses((status = 201, body = ServicesAnswer), (status = 400, description = "Invalid input, or Unitel cannot serve this number"),
              (status = 401, description = "No WeChat identity"), (status = 429, description = "Too many lookups this minute"),
              (status = 502, description = "Unitel unavailable")))]
async fn services(
    State(ctx): State<ApiContext>,
    user: CurrentUser,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<Value>,
) -> Result<Created<Value>, ApiError> {
    let read = |mut body: LegacyBody| {
        let msisdn = body.string("msisdn", "手机号码必须是字符串", "手机号码不能为空");
        let info = body.one_of(
            "info",
            &["0", "1"],
            false,
            "资费详情参数必须是 0 或 1",
            None,
        );
        body.finish()?;
        let (Some(msisdn), Some(info)) = (msisdn, info) else {
            unreachable!("finish() refused a body without both");
        };
        Ok((parse_msisdn(&msisdn, "msisdn")?, info))
    };
    let lookups = ctx.lookups.clone();
    let ask = |(msisdn, info): (Msisdn, String), rate| async move {
        let service = lookups.service_type(&msisdn, &info).await?;
        let mut answer = service.raw.clone();
        for group in ["cards", "data"] {
            if let Some(Value::Object(lists)) = answer.pointer_mut(&format!("/service/{group}")) {
                for product in lists.values_mut().filter_map(Value::as_array_mut).flatten() {
                    price_in_yuan(product, "price", "priceRmb", "priceFen", rate);
                }
            }
        }
        if let Value::Object(fields) = &mut answer {
            fields.insert("exchangeRate".into(), rate_number(rate));
        }
        Ok(answer)
    };
    priced_lookup(&ctx, &user, address, body, read, ask).await
}

/// `{owner, msisdn}`: no other field; `owner` is passed to Unitel as given.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PostpaidBillRequest {
    #[schema(example = "88616609", pattern = r"^[1-9][0-9]{7}$")]
    owner: String,
    #[schema(example = "88616609", pattern = r"^[1-9][0-9]{7}$")]
    msisdn: String,
}

/// Unitel's bill answer as received, snake_case (`invoice_amount`, `remain_amount`,
/// `invoice_date`, `broadcast_fee`, `total_unpaid`, `invoice_unpaid`, `invoice_status`,
/// `result`, `code`, `msg`), with `totalUnpaidRmb` (yuan, a string; null when nothing is
/// due) and `totalUnpaidFen` added.
#[derive(ToSchema)]
#[schema(value_type = Object)]
#[allow(dead_code)]
pub struct PostpaidBillAnswer(Value);

/// A postpaid number's unpaid bill.
#[utoipa::path(post, path = "/unitel/postpaid-bill", tag = "products", security(("wechat_identity" = []), ("session_token" = [])),
    request_body = PostpaidBillRequest,
    responses((status = 201, body = PostpaidBillAnswer), (status = 400, description = "Invalid input, or Unitel cannot serve this number"),
              (status = 401, description = "No WeChat identity"), (status = 429, description = "Too many lookups this minute"),
              (status = 502, description = "Unitel unavailable")))]
async fn postpaid_bill(
    State(ctx): State<ApiContext>,
    user: CurrentUser,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<Value>,
) -> Result<Created<Value>, ApiError> {
    let read = |mut body: LegacyBody| {
        let owner = body.string("owner", "账户所有者必须是字符串", "账户所有者不能为空");
        let msisdn = body.string("msisdn", "手机号码必须是字符串", "手机号码不能为空");
        body.finish()?;
        let (Some(owner), Some(msisdn)) = (owner, msisdn) else {
            unreachable!("finish() refused a body without both");
        };
        Ok((
            parse_msisdn(&owner, "owner")?,
            parse_msisdn(&msisdn, "msisdn")?,
        ))
    };
    let lookups = ctx.lookups.clone();
    let ask = |(owner, msisdn): (Msisdn, Msisdn), rate| async move {
        let bill = lookups.postpaid_bill(&owner, &msisdn).await?;
        let mut answer = bill.raw.clone();
        if bill.total_unpaid > 0 {
            price_in_yuan(
                &mut answer,
                "total_unpaid",
                "totalUnpaidRmb",
                "totalUnpaidFen",
                rate,
            );
        } else if let Value::Object(fields) = &mut answer {
            fields.insert("totalUnpaidRmb".into(), Value::Null);
            fields.insert("totalUnpaidFen".into(), Value::Null);
        }
        Ok(answer)
    };
    priced_lookup(&ctx, &user, address, body, read, ask).await
}

/// What both lookups do around their own question: counted against the lookup limits,
/// the body read (`read`), then Unitel asked and its answer priced at the current rate
/// (`ask`); Unitel's refusals in the customer's words.
async fn priced_lookup<Q, Fut>(
    ctx: &ApiContext,
    user: &CurrentUser,
    address: IpAddr,
    body: Value,
    read: impl FnOnce(LegacyBody) -> Result<Q, ApiError>,
    ask: impl FnOnce(Q, MntPerYuan) -> Fut,
) -> Result<Created<Value>, ApiError>
where
    Fut: Future<Output = Result<Value, UnitelError>>,
{
    // Lookups cost a Unitel call each (unless cached): products and bills share one limit.
    ctx.limiter
        .check_user(
            Route::UnitelLookups,
            &ctx.config.limits,
            &user.openid,
            address,
        )
        .await?;
    let question = read(LegacyBody::new(body)?)?;
    let rate = rates::required(&ctx.db).await?.rate;
    let answer = ask(question, rate).await.map_err(unitel_error)?;
    Ok(Created(answer))
}

/// Adds the yuan price of `object[price]` (whole tugrik, a number or digits) as `rmb` (a
/// string, two decimals at most) and `fen`; leaves an object without a readable price as
/// it is.
fn price_in_yuan(object: &mut Value, price: &str, rmb: &str, fen: &str, rate: MntPerYuan) {
    let mnt = match object.get(price) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let Some(amount) = mnt
        .and_then(|m| Mnt::new(m).ok())
        .and_then(|m| price_in_fen(m, rate).ok())
    else {
        return;
    };
    if let Value::Object(fields) = object {
        fields.insert(rmb.into(), json!(amount.yuan().normalize().to_string()));
        fields.insert(fen.into(), json!(amount.get()));
    }
}
