//! Orders: created and priced on the server, read by their owner only.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shared::money::{price_in_fen, Fen, Mnt};
use shared::order::{
    Operator, OrderNumber, PaymentStatus, RechargeStatus, RechargeType, RefundStatus,
};
use utoipa::{IntoParams, ToSchema};

use shared::history::Actor;
use shared::lifecycle::{self, NewOrder};

use super::envelope::Envelope;
use super::error::ApiError;
use super::extractor::{ClientAddress, CurrentUser};
use super::json::ApiJson;
use super::types::{parse_msisdn, parse_order_number, unitel_error, OrderNumberParam};
use crate::context::ApiContext;
use crate::payment_watch::QueryResult;
use crate::rate_limit::Caller;
use crate::refunds::{self, Refund};
use crate::store::orders::{self, ListFilter, OrderRow};
use crate::store::rates;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/orders", post(create))
        .route("/orders/my", get(mine))
        .route("/orders/{order_number}", get(one))
        .route("/orders/{order_number}/cancel", post(cancel))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrderRequest {
    #[schema(example = "88616609", pattern = r"^[1-9][0-9]{7}$")]
    phone_number: String,
    #[schema(example = "unitel", pattern = r"^[Uu][Nn][Ii][Tt][Ee][Ll]$")]
    product_operator: String,
    /// `voice`, `data` or `postpaid`.
    #[schema(example = "voice", pattern = r"^(voice|data|postpaid)$")]
    recharge_type: String,
    /// The card or package code from the product list; ignored for `postpaid`, which pays
    /// the whole unpaid bill.
    #[schema(example = "SD5000")]
    #[serde(default)]
    product_code: Option<String>,
}

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
    created_at: DateTime<Utc>,
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

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    #[schema(value_type = String)]
    order_number: OrderNumber,
    #[schema(value_type = String)]
    phone_number: shared::order::Msisdn,
    product_operator: String,
    #[schema(value_type = String)]
    recharge_type: RechargeType,
    product_code: String,
    product_name: String,
    product_eng_name: Option<String>,
    #[schema(value_type = i64)]
    price_mnt: Mnt,
    #[schema(value_type = String, example = "440")]
    exchange_rate: Decimal,
    #[schema(value_type = i64)]
    amount_fen: Fen,
    /// Yuan, two decimals.
    #[schema(value_type = String, example = "11.36")]
    price_rmb: Decimal,
    /// `unpaid`, `paid` or `closed`.
    #[schema(value_type = String)]
    payment_status: PaymentStatus,
    /// `pending`, `processing`, `success`, `failed` or `unknown` (being checked; nobody is
    /// charged twice).
    #[schema(value_type = String)]
    recharge_status: RechargeStatus,
    transaction_id: Option<String>,
    paid_at: Option<DateTime<Utc>>,
    recharged_at: Option<DateTime<Utc>>,
    seq_id: Option<String>,
    /// Unitel's VAT e-receipt (e-barimt), the buyer's to keep.
    #[schema(value_type = Option<Object>)]
    vat_receipt: Option<serde_json::Value>,
    /// Where the order is, for the customer (Chinese); none when there is nothing to say.
    recharge_note: Option<&'static str>,
    /// The refund, once one was requested.
    refund: Option<CustomerRefund>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl OrderView {
    pub fn new(row: OrderRow, refund: Option<Refund>) -> Self {
        let recharge_note = customer_note(
            row.payment_status,
            row.recharge_status,
            refund.as_ref().map(|r| r.status),
        );
        OrderView {
            price_rmb: row.amount_fen.yuan(),
            order_number: row.order_number,
            phone_number: row.phone_number,
            product_operator: row.product_operator,
            recharge_type: row.recharge_type,
            product_code: row.product_code,
            product_name: row.product_name,
            product_eng_name: row.product_eng_name,
            price_mnt: row.price_mnt,
            exchange_rate: row.exchange_rate.normalize(),
            amount_fen: row.amount_fen,
            payment_status: row.payment_status,
            recharge_status: row.recharge_status,
            transaction_id: row.transaction_id,
            paid_at: row.paid_at,
            recharged_at: row.recharged_at,
            seq_id: row.seq_id,
            vat_receipt: row.vat_receipt,
            recharge_note,
            refund: refund.map(CustomerRefund::from),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Views of a page of orders, each with its refund (one query for the page).
async fn with_refunds(ctx: &ApiContext, rows: Vec<OrderRow>) -> Result<Vec<OrderView>, ApiError> {
    let numbers: Vec<OrderNumber> = rows.iter().map(|r| r.order_number.clone()).collect();
    let mut refunds = refunds::find_many(&ctx.db, &numbers).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let refund = refunds.remove(&row.order_number);
            OrderView::new(row, refund)
        })
        .collect())
}

/// The caller's order; someone else's answers exactly like one that does not exist.
async fn owned_order(
    ctx: &ApiContext,
    order_number: &OrderNumber,
    user: &CurrentUser,
) -> Result<OrderRow, ApiError> {
    orders::find(&ctx.db, order_number, Some(&user.openid))
        .await?
        .ok_or_else(|| ApiError::NotFound("Order not found".into()))
}

struct PricedProduct {
    code: String,
    name: String,
    eng_name: Option<String>,
    price: Mnt,
}

/// The server, never the client, decides what an order costs: Unitel's price for this
/// number's tariff, at our current rate.
async fn price_product(
    ctx: &ApiContext,
    request: &CreateOrderRequest,
    recharge_type: RechargeType,
    msisdn: &shared::order::Msisdn,
) -> Result<PricedProduct, ApiError> {
    let code = || {
        request
            .product_code
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ApiError::BadRequest("productCode is required".into()))
    };
    let not_sold = |code: &str| {
        ApiError::BadRequest(format!("productCode {code:?} is not sold for this number"))
    };
    let product = match recharge_type {
        RechargeType::Voice | RechargeType::Data => {
            let code = code()?;
            let service = ctx
                .unitel
                .service_type(msisdn)
                .await
                .map_err(unitel_error)?;
            let found = match recharge_type {
                RechargeType::Voice => service.find_card(code),
                _ => service.find_data_package(code),
            };
            let product = found.ok_or_else(|| not_sold(code))?;
            PricedProduct {
                code: product.code.clone(),
                name: product.name.clone(),
                eng_name: Some(product.eng_name.clone()).filter(|n| !n.is_empty()),
                price: Mnt::new(product.price).map_err(|_| not_sold(code))?,
            }
        }
        RechargeType::Postpaid => {
            let bill = ctx
                .unitel
                .postpaid_bill(msisdn, msisdn)
                .await
                .map_err(unitel_error)?;
            if bill.total_unpaid <= 0 {
                return Err(ApiError::BadRequest(
                    "This number has no unpaid postpaid bill".into(),
                ));
            }
            PricedProduct {
                code: "POSTPAID_BILL".into(),
                name: format!("Төлбөр {}", bill.invoice_date),
                eng_name: Some(format!("Postpaid bill {}", bill.invoice_date)),
                price: Mnt::new(bill.total_unpaid)
                    .map_err(|_| ApiError::Upstream("Unitel returned an invalid bill".into()))?,
            }
        }
    };
    Ok(product)
}

/// Creates an order priced on the server.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = CreateOrderRequest,
    params(("X-WX-OPENID" = String, Header, description = "Injected by the cloud-hosting gateway")),
    responses((status = 200, body = OrderView), (status = 400, description = "Invalid input"),
              (status = 401, description = "No WeChat identity"), (status = 429, description = "Too many orders this minute"),
              (status = 502, description = "Unitel unavailable")))]
async fn create(
    State(ctx): State<ApiContext>,
    user: CurrentUser,
    ClientAddress(address): ClientAddress,
    ApiJson(request): ApiJson<CreateOrderRequest>,
) -> Result<Envelope<OrderView>, ApiError> {
    let limits = &ctx.config.limits;
    ctx.limiter
        .check(
            "POST /orders",
            &[
                (Caller::Openid(&user.openid), limits.orders_per_minute),
                (Caller::Address(address), limits.per_address_per_minute),
            ],
        )
        .await?;
    let msisdn = parse_msisdn(&request.phone_number, "phoneNumber")?;
    let operator = Operator::parse(&request.product_operator)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let recharge_type = RechargeType::parse(&request.recharge_type)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let product = price_product(&ctx, &request, recharge_type, &msisdn).await?;
    let rate = rates::current(&ctx.db).await?.rate;
    let amount: Fen = price_in_fen(product.price, rate).map_err(|e| {
        tracing::warn!(error = %e, "product cannot be priced in yuan");
        ApiError::BadRequest("This product cannot be sold at the current exchange rate".into())
    })?;
    let order_number = OrderNumber::generate();
    tracing::Span::current().record("order_number", order_number.as_str());
    lifecycle::create_order(
        &ctx.db,
        &NewOrder {
            order_number: &order_number,
            user_id: user.id,
            openid: &user.openid,
            msisdn: &msisdn,
            operator,
            recharge_type,
            product_code: &product.code,
            product_name: &product.name,
            product_eng_name: product.eng_name.as_deref(),
            price: product.price,
            rate,
            amount,
        },
    )
    .await?;
    tracing::info!(order_number = %order_number, amount_fen = amount.get(), "order created");
    let row = owned_order(&ctx, &order_number, &user).await?;
    Ok(Envelope(OrderView::new(row, None)))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct MyOrdersQuery {
    /// A payment status (`unpaid`, `paid`, `closed`) or a recharge status (`pending`,
    /// `processing`, `success`, `failed`, `unknown`).
    #[param(pattern = r"^(unpaid|paid|closed|pending|processing|success|failed|unknown)$")]
    status: Option<String>,
    #[param(pattern = r"^(unpaid|paid|closed)$")]
    payment_status: Option<String>,
    #[param(pattern = r"^(pending|processing|success|failed|unknown)$")]
    recharge_status: Option<String>,
    /// First day, `YYYY-MM-DD`, China time.
    #[param(value_type = Option<String>, format = Date)]
    start_date: Option<String>,
    /// Last day (inclusive), `YYYY-MM-DD`, China time.
    #[param(value_type = Option<String>, format = Date)]
    end_date: Option<String>,
    /// From 1.
    #[param(minimum = 1, maximum = 100000)]
    page: Option<i64>,
    /// 1 to 100, default 10.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPage {
    items: Vec<OrderView>,
    total: i64,
    page: i64,
    limit: i64,
    total_pages: i64,
}

fn china_day_start(value: &str, field: &str) -> Result<DateTime<Utc>, ApiError> {
    let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| ApiError::BadRequest(format!("{field} must be a date like 2026-01-31")))?;
    let china = FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    let start = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    Ok(china
        .from_local_datetime(&start)
        .single()
        .expect("a fixed offset has no gaps")
        .with_timezone(&Utc))
}

fn status_filter(query: &MyOrdersQuery) -> Result<ListFilter, ApiError> {
    let mut filter = ListFilter::default();
    let payment =
        |s: &str| PaymentStatus::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()));
    let recharge =
        |s: &str| RechargeStatus::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()));
    if let Some(status) = query.status.as_deref() {
        if PaymentStatus::parse(status).is_ok() {
            filter.payment_status = Some(payment(status)?);
        } else {
            filter.recharge_status = Some(recharge(status).map_err(|_| {
                ApiError::BadRequest(format!(
                    "status {status:?} is not a payment or recharge status"
                ))
            })?);
        }
    }
    if let Some(s) = query.payment_status.as_deref() {
        filter.payment_status = Some(payment(s)?);
    }
    if let Some(s) = query.recharge_status.as_deref() {
        filter.recharge_status = Some(recharge(s)?);
    }
    if let Some(start) = query.start_date.as_deref() {
        filter.from = Some(china_day_start(start, "startDate")?);
    }
    if let Some(end) = query.end_date.as_deref() {
        filter.until = Some(china_day_start(end, "endDate")? + chrono::Duration::days(1));
    }
    Ok(filter)
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/orders/my", tag = "orders", params(MyOrdersQuery),
    responses((status = 200, body = OrderPage), (status = 400, description = "Invalid filter"),
              (status = 401, description = "No WeChat identity")))]
async fn mine(
    State(ctx): State<ApiContext>,
    user: CurrentUser,
    Query(query): Query<MyOrdersQuery>,
) -> Result<Envelope<OrderPage>, ApiError> {
    let filter = status_filter(&query)?;
    let page = query.page.unwrap_or(1);
    let limit = query.limit.unwrap_or(10);
    if !(1..=100_000).contains(&page) {
        return Err(ApiError::BadRequest(
            "page must be between 1 and 100000".into(),
        ));
    }
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 100".into(),
        ));
    }
    let (rows, total) =
        orders::list_for_user(&ctx.db, &user.openid, &filter, limit, (page - 1) * limit).await?;
    Ok(Envelope(OrderPage {
        items: with_refunds(&ctx, rows).await?,
        total,
        page,
        limit,
        total_pages: (total + limit - 1) / limit,
    }))
}

/// One of the caller's orders, with its VAT receipt once credited.
#[utoipa::path(get, path = "/orders/{orderNumber}", tag = "orders",
    params(OrderNumberParam),
    responses((status = 200, body = OrderView), (status = 404, description = "No such order for this user"),
              (status = 401, description = "No WeChat identity")))]
async fn one(
    State(ctx): State<ApiContext>,
    user: CurrentUser,
    Path(order_number): Path<String>,
) -> Result<Envelope<OrderView>, ApiError> {
    let order_number = parse_order_number(&order_number)?;
    tracing::Span::current().record("order_number", order_number.as_str());
    let row = owned_order(&ctx, &order_number, &user).await?;
    // The user is looking at an order they may just have paid: if its callback is late or
    // lost, ask WeChat now rather than show it unpaid — at most once per
    // ORDER_QUERY_EVERY_MS for the order, however often (and wherever) it is read.
    let query_now = row.payment_status == PaymentStatus::Unpaid
        && row.prepay_id.is_some()
        && lifecycle::take_payment_check(
            &ctx.db,
            &order_number,
            ctx.config.limits.order_query_every,
        )
        .await?;
    if query_now {
        match ctx
            .payments
            .settle_by_query(&order_number, row.amount_fen)
            .await
        {
            Ok(QueryResult::Paid(_)) => {
                let row = owned_order(&ctx, &order_number, &user).await?;
                return Ok(Envelope(OrderView::new(row, None)));
            }
            Ok(QueryResult::NotPaid(_)) => {}
            Err(error) => tracing::warn!(%error, "payment query on read failed"),
        }
    }
    let refund = refunds::find(&ctx.db, &order_number).await?;
    Ok(Envelope(OrderView::new(row, refund)))
}

/// Cancels one of the caller's unpaid orders: closed at WeChat first (so it can no longer
/// be paid there), then here.
#[utoipa::path(post, path = "/orders/{orderNumber}/cancel", tag = "orders",
    params(OrderNumberParam),
    responses((status = 200, body = OrderView), (status = 401, description = "No WeChat identity"),
              (status = 404, description = "No such order for this user"),
              (status = 409, description = "Already paid, or WeChat cannot close it yet"),
              (status = 502, description = "WeChat Pay unreachable")))]
async fn cancel(
    State(ctx): State<ApiContext>,
    user: CurrentUser,
    ClientAddress(address): ClientAddress,
    Path(order_number): Path<String>,
) -> Result<Envelope<OrderView>, ApiError> {
    let limits = &ctx.config.limits;
    ctx.limiter
        .check(
            "POST /orders/{orderNumber}/cancel",
            &[
                (Caller::Openid(&user.openid), limits.cancels_per_minute),
                (Caller::Address(address), limits.per_address_per_minute),
            ],
        )
        .await?;
    let order_number = parse_order_number(&order_number)?;
    tracing::Span::current().record("order_number", order_number.as_str());
    let row = owned_order(&ctx, &order_number, &user).await?;
    match row.payment_status {
        PaymentStatus::Unpaid => {}
        PaymentStatus::Closed => return Ok(Envelope(OrderView::new(row, None))),
        PaymentStatus::Paid => {
            return Err(ApiError::Conflict(
                "A paid order cannot be cancelled".into(),
            ))
        }
    }
    if row.prepay_id.is_some() {
        match ctx.wechat.close_order(&order_number).await {
            Ok(crate::wechat::CloseOutcome::Closed) => {}
            Ok(crate::wechat::CloseOutcome::AlreadyPaid) => {
                if let Err(error) = ctx
                    .payments
                    .settle_by_query(&order_number, row.amount_fen)
                    .await
                {
                    tracing::warn!(%error, "recording a payment found while cancelling failed");
                }
                return Err(ApiError::Conflict(
                    "This order has already been paid".into(),
                ));
            }
            Err(crate::wechat::WechatError::Business { code, description }) => {
                tracing::warn!(%code, %description, "closeorder refused");
                return Err(ApiError::Conflict(
                    "WeChat cannot close this order yet; try again in a few minutes".into(),
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "closeorder failed");
                return Err(ApiError::Upstream(
                    "WeChat Pay is unavailable, please try again".into(),
                ));
            }
        }
    }
    lifecycle::close_unpaid(
        &ctx.db,
        &order_number,
        &Actor::User(user.openid.clone()),
        "cancelled by the user",
        row.prepay_id.is_none(),
    )
    .await?;
    let row = owned_order(&ctx, &order_number, &user).await?;
    if row.payment_status != PaymentStatus::Closed {
        // A payment started meanwhile: the sweep closes it at WeChat first.
        return Err(ApiError::Conflict(
            "The order changed meanwhile; please look at it again".into(),
        ));
    }
    tracing::info!(order_number = %order_number, "order cancelled");
    Ok(Envelope(OrderView::new(row, None)))
}
