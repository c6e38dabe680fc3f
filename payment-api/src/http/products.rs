//! What a number can buy, priced in yuan at the current rate. Public, as in the system we
//! replace: the mini-program shows products before the user is known.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shared::money::{price_in_fen, Mnt, MntPerYuan};
use shared::unitel::{Product, ProductGroup};
use utoipa::ToSchema;

use super::envelope::Envelope;
use super::error::ApiError;
use super::extractor::{ClientAddress, CurrentUser};
use super::json::ApiJson;
use super::types::{parse_msisdn, unitel_error};
use crate::context::ApiContext;
use crate::rate_limit::Caller;
use crate::store::rates;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/unitel/products/services", post(services))
        .route("/unitel/postpaid-bill", post(postpaid_bill))
}

#[derive(Deserialize, ToSchema)]
pub struct ServicesRequest {
    /// 8-digit Unitel number.
    #[schema(example = "88616609", pattern = r"^[1-9][0-9]{7}$")]
    msisdn: String,
    #[serde(default)]
    #[allow(dead_code)]
    info: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    code: String,
    name: String,
    eng_name: String,
    short_name: String,
    price_mnt: i64,
    /// Yuan, two decimals.
    #[schema(value_type = String, example = "11.36")]
    price_rmb: Decimal,
    amount_fen: i64,
    unit: Option<i64>,
    data: Option<String>,
    days: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicesView {
    msisdn: String,
    servicetype: String,
    tariff_name: String,
    bill_type: String,
    is_postpaid: bool,
    #[schema(value_type = String, example = "440")]
    exchange_rate: Decimal,
    /// Voice/unit cards by group (`day`, `noday`, `special`): rechargeType `voice`.
    cards: BTreeMap<String, Vec<ProductView>>,
    /// Data packages by group (`data`, `days`, `entertainment`): rechargeType `data`.
    data: BTreeMap<String, Vec<ProductView>>,
}

fn view(product: &Product, rate: MntPerYuan) -> Option<ProductView> {
    let amount = price_in_fen(Mnt::new(product.price).ok()?, rate).ok()?;
    Some(ProductView {
        code: product.code.clone(),
        name: product.name.clone(),
        eng_name: product.eng_name.clone(),
        short_name: product.short_name.clone(),
        price_mnt: product.price,
        price_rmb: amount.yuan(),
        amount_fen: amount.get(),
        unit: product.unit,
        data: product.data.clone(),
        days: product.days,
    })
}

fn views(groups: &ProductGroup, rate: MntPerYuan) -> BTreeMap<String, Vec<ProductView>> {
    groups
        .iter()
        .map(|(group, products)| {
            (
                group.clone(),
                products.iter().filter_map(|p| view(p, rate)).collect(),
            )
        })
        .collect()
}

/// Products Unitel sells to this number (they depend on its tariff), priced in yuan.
#[utoipa::path(post, path = "/unitel/products/services", tag = "products",
    request_body = ServicesRequest,
    responses((status = 200, body = ServicesView), (status = 400, description = "Invalid number or unknown subscriber"),
              (status = 502, description = "Unitel unavailable")))]
async fn services(
    State(ctx): State<ApiContext>,
    user: CurrentUser,
    ClientAddress(address): ClientAddress,
    ApiJson(request): ApiJson<ServicesRequest>,
) -> Result<Envelope<ServicesView>, ApiError> {
    limit_lookups(&ctx, &user, address).await?;
    let msisdn = parse_msisdn(&request.msisdn, "msisdn")?;
    let rate = rates::current(&ctx.db).await?.rate;
    let service = ctx
        .lookups
        .service_type(&msisdn)
        .await
        .map_err(unitel_error)?;
    Ok(Envelope(ServicesView {
        msisdn: msisdn.to_string(),
        is_postpaid: service.is_postpaid(),
        servicetype: service.servicetype.clone(),
        tariff_name: service.tariff_name.clone(),
        bill_type: service.bill_type.clone(),
        exchange_rate: rate.get().normalize(),
        cards: views(&service.cards, rate),
        data: views(&service.data, rate),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct PostpaidBillRequest {
    #[schema(example = "88616609", pattern = r"^[1-9][0-9]{7}$")]
    owner: String,
    #[schema(example = "88616609", pattern = r"^[1-9][0-9]{7}$")]
    msisdn: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostpaidBillView {
    msisdn: String,
    invoice_amount: i64,
    remain_amount: i64,
    invoice_date: String,
    invoice_status: String,
    /// What a `postpaid` order for this number will pay, in tugrik.
    total_unpaid: i64,
    invoice_unpaid: i64,
    /// The same in yuan at the current rate; null when nothing is due.
    #[schema(value_type = Option<String>, example = "168.68")]
    total_unpaid_rmb: Option<Decimal>,
    total_unpaid_fen: Option<i64>,
}

/// A postpaid number's unpaid bill.
#[utoipa::path(post, path = "/unitel/postpaid-bill", tag = "products",
    request_body = PostpaidBillRequest,
    responses((status = 200, body = PostpaidBillView), (status = 400, description = "Invalid number or not postpaid"),
              (status = 502, description = "Unitel unavailable")))]
async fn postpaid_bill(
    State(ctx): State<ApiContext>,
    user: CurrentUser,
    ClientAddress(address): ClientAddress,
    ApiJson(request): ApiJson<PostpaidBillRequest>,
) -> Result<Envelope<PostpaidBillView>, ApiError> {
    limit_lookups(&ctx, &user, address).await?;
    let owner = parse_msisdn(&request.owner, "owner")?;
    let msisdn = parse_msisdn(&request.msisdn, "msisdn")?;
    let rate = rates::current(&ctx.db).await?.rate;
    let bill = ctx
        .lookups
        .postpaid_bill(&owner, &msisdn)
        .await
        .map_err(unitel_error)?;
    let due = Mnt::new(bill.total_unpaid)
        .ok()
        .and_then(|mnt| price_in_fen(mnt, rate).ok());
    Ok(Envelope(PostpaidBillView {
        msisdn: msisdn.to_string(),
        invoice_amount: bill.invoice_amount,
        remain_amount: bill.remain_amount,
        invoice_date: bill.invoice_date,
        invoice_status: bill.invoice_status,
        total_unpaid: bill.total_unpaid,
        invoice_unpaid: bill.invoice_unpaid,
        total_unpaid_rmb: due.map(|f| f.yuan()),
        total_unpaid_fen: due.map(|f| f.get()),
    }))
}

/// Lookups cost a Unitel call each (unless cached): products and bills share one limit,
/// per user and per address.
async fn limit_lookups(
    ctx: &ApiContext,
    user: &CurrentUser,
    address: std::net::IpAddr,
) -> Result<(), ApiError> {
    let limits = &ctx.config.limits;
    ctx.limiter
        .check(
            "Unitel lookups",
            &[
                (Caller::Openid(&user.openid), limits.lookups_per_minute),
                (Caller::Address(address), limits.per_address_per_minute),
            ],
        )
        .await
}
