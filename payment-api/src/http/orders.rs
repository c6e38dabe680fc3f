//! Orders: created and priced on the server, read by their owner only. The routes, their
//! status codes and the order object are the replaced system's (docs/compatibility.md);
//! cancelling is this project's own.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use serde_json::Value;
use shared::lifecycle;
use shared::order::{Msisdn, Operator, OrderNumber, PaymentStatus, RechargeStatus, RechargeType};
use utoipa::{IntoParams, ToSchema};

use super::days::china_day;
use super::envelope::{Created, Envelope};
use super::error::ApiError;
use super::extractor::{ClientAddress, CurrentUser};
use super::json::ApiJson;
use super::legacy_input::LegacyBody;
use super::order_view::OrderView;
use super::params::{parse_order_number, OrderNumberParam};
use crate::context::ApiContext;
use crate::orders::cancel::cancel_order;
use crate::orders::create::{create_order, Customer, OrderRequest};
use crate::payment_watch::QueryResult;
use crate::payments::refunds;
use crate::rate_limit::Route;
use crate::store::orders::{self, ListFilter, OrderRow};
use crate::store::users;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/orders", post(create))
        .route("/orders/my", get(mine))
        .route("/orders/{order_number}", get(one))
        .route("/orders/{order_number}/cancel", post(cancel))
}

/// `{phoneNumber, productOperator, rechargeType, productCode}`: no other field.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct CreateOrderRequest {
    /// The 8-digit Unitel number to top up.
    #[schema(example = "88616609", pattern = r"^[1-9][0-9]{7}$")]
    phone_number: String,
    /// `Unitel` (`Mobicom`, `Ondo` and `Skytel` are refused with 400: not sold).
    #[schema(example = "Unitel", pattern = r"^[Uu][Nn][Ii][Tt][Ee][Ll]$")]
    product_operator: String,
    /// `voice`, `data` or `postpaid`.
    #[schema(example = "voice", pattern = r"^(voice|data|postpaid)$")]
    recharge_type: String,
    /// The card or package code from the product list; not needed for `postpaid`, which
    /// pays the whole unpaid bill.
    #[schema(example = "SD5000")]
    product_code: Option<String>,
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

fn order_not_found() -> ApiError {
    ApiError::NotFound("订单不存在".into())
}

/// The caller's order; someone else's answers exactly like one that does not exist.
async fn owned_order(
    ctx: &ApiContext,
    order_number: &OrderNumber,
    user: &CurrentUser,
) -> Result<OrderRow, ApiError> {
    orders::find(&ctx.db, order_number, Some(&user.openid))
        .await?
        .ok_or_else(order_not_found)
}

/// Creates an order priced on the server.
#[utoipa::path(post, path = "/orders", tag = "orders", security(("wechat_identity" = []), ("session_token" = [])), request_body = CreateOrderRequest,
    responses((status = 201, body = OrderView), (status = 400, description = "Invalid input, an operator not sold, no product of that code, or no bill to pay"),
              (status = 401, description = "No WeChat identity"), (status = 429, description = "Too many orders this minute"),
              (status = 502, description = "Unitel unavailable")))]
async fn create(
    State(ctx): State<ApiContext>,
    user: CurrentUser,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<Value>,
) -> Result<Created<OrderView>, ApiError> {
    ctx.limiter
        .check_user(
            Route::CreateOrder,
            &ctx.config.limits,
            &user.openid,
            address,
        )
        .await?;
    let request = read_order_request(body)?;
    let customer = Customer {
        user_id: user.id,
        openid: &user.openid,
    };
    let row = create_order(&ctx, &customer, &request).await?;
    Ok(Created(OrderView::new(row, None)))
}

/// `{phoneNumber, productOperator, rechargeType, productCode}`, refused in the replaced
/// system's words.
fn read_order_request(body: Value) -> Result<OrderRequest, ApiError> {
    let mut body = LegacyBody::new(body)?;
    let phone = body.string(
        "phoneNumber",
        "充值手机号必须是字符串",
        "充值手机号不能为空",
    );
    let operator = body.one_of(
        "productOperator",
        &["Unitel", "Mobicom", "Ondo", "Skytel"],
        true,
        "运营商必须是有效的枚举值",
        Some("运营商不能为空"),
    );
    let recharge_type = body.one_of(
        "rechargeType",
        &["voice", "data", "postpaid"],
        true,
        "充值类型必须是有效的枚举值",
        Some("充值类型不能为空"),
    );
    let product_code = body.optional_string("productCode", "商品代码必须是字符串");
    body.finish()?;
    let (Some(phone), Some(operator), Some(recharge_type)) = (phone, operator, recharge_type)
    else {
        unreachable!("finish() refused a body without them");
    };
    Ok(OrderRequest {
        operator: Operator::parse(&operator)
            .map_err(|_| ApiError::BadRequest(format!("不支持的运营商: {operator}")))?,
        recharge_type: RechargeType::parse(&recharge_type)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        msisdn: Msisdn::parse(&phone)
            .map_err(|_| ApiError::BadRequest("充值手机号必须是 8 位 Unitel 号码".into()))?,
        product_code,
    })
}

/// The replaced system's filters, and this project's `status` (its own words for a
/// payment or a top-up state). Any other parameter is refused, as there.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, non_snake_case)]
pub struct MyOrdersQuery {
    /// `unpaid` (closed ones included) or `paid`; `closed` alone, too.
    #[param(pattern = r"^(unpaid|paid|closed)$")]
    paymentStatus: Option<String>,
    /// `pending` (being credited), `success`, `failed`, `timeout` or `unknown` (both: the
    /// outcome is being checked); `processing` alone, too.
    #[param(pattern = r"^(pending|processing|success|failed|timeout|unknown)$")]
    rechargeStatus: Option<String>,
    /// This project's own vocabulary: a payment state (`unpaid`, `paid`, `closed`) or a
    /// top-up state (`pending`, `processing`, `success`, `failed`, `unknown`).
    #[param(pattern = r"^(unpaid|paid|closed|pending|processing|success|failed|unknown)$")]
    status: Option<String>,
    /// First day, `YYYY-MM-DD`, China time, from 2000-01-01 to 2100-12-31.
    #[param(value_type = Option<String>, format = Date)]
    startDate: Option<String>,
    /// Last day (inclusive), `YYYY-MM-DD`, China time, from 2000-01-01 to 2100-12-31.
    #[param(value_type = Option<String>, format = Date)]
    endDate: Option<String>,
    /// From 1.
    #[param(minimum = 1, maximum = 100000)]
    page: Option<i64>,
    /// 1 to 100, default 10.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    page: i64,
    limit: i64,
    total: i64,
    /// 0 when there is no order.
    total_pages: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPage {
    data: Vec<OrderView>,
    pagination: Pagination,
}

/// A whole number of at least 1, read as the replaced system read it.
fn positive(
    value: Option<&String>,
    not_integer: &str,
    below_one: &str,
) -> Result<Option<i64>, ApiError> {
    let Some(text) = value else {
        return Ok(None);
    };
    let number: i64 = text
        .trim()
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{below_one}, {not_integer}")))?;
    if number < 1 {
        return Err(ApiError::BadRequest(below_one.to_owned()));
    }
    Ok(Some(number))
}

/// The filters, from the query as given: unknown parameters and bad values are 400s in
/// the replaced system's words.
fn list_filter(query: &HashMap<String, String>) -> Result<(ListFilter, i64, i64), ApiError> {
    const KNOWN: &[&str] = &[
        "paymentStatus",
        "rechargeStatus",
        "status",
        "startDate",
        "endDate",
        "page",
        "limit",
    ];
    let mut unknown: Vec<&String> = query
        .keys()
        .filter(|k| !KNOWN.contains(&k.as_str()))
        .collect();
    unknown.sort();
    if !unknown.is_empty() {
        let problems: Vec<String> = unknown
            .iter()
            .map(|k| format!("property {k} should not exist"))
            .collect();
        return Err(ApiError::BadRequest(problems.join(", ")));
    }
    let mut filter = ListFilter::default();
    match query.get("paymentStatus").map(String::as_str) {
        None => {}
        Some("unpaid") => {
            filter.payment_statuses = Some(vec![PaymentStatus::Unpaid, PaymentStatus::Closed])
        }
        Some("paid") => filter.payment_statuses = Some(vec![PaymentStatus::Paid]),
        Some("closed") => filter.payment_statuses = Some(vec![PaymentStatus::Closed]),
        Some(_) => return Err(ApiError::BadRequest("支付状态值不正确".into())),
    }
    let paid_with =
        |statuses: Vec<RechargeStatus>| (Some(vec![PaymentStatus::Paid]), Some(statuses));
    match query.get("rechargeStatus").map(String::as_str) {
        None => {}
        Some(value) => {
            let statuses = match value {
                "pending" => vec![RechargeStatus::Pending, RechargeStatus::Processing],
                "processing" => vec![RechargeStatus::Processing],
                "success" => vec![RechargeStatus::Success],
                "failed" => vec![RechargeStatus::Failed],
                "timeout" | "unknown" => vec![RechargeStatus::Unknown],
                _ => return Err(ApiError::BadRequest("充值状态值不正确".into())),
            };
            let (payment, recharge) = paid_with(statuses);
            // Recharge states exist once paid: together with a payment filter, both hold.
            if filter
                .payment_statuses
                .as_ref()
                .is_some_and(|p| !p.contains(&PaymentStatus::Paid))
            {
                filter.payment_statuses = Some(Vec::new());
            } else {
                filter.payment_statuses = payment;
            }
            filter.recharge_statuses = recharge;
        }
    }
    if let Some(status) = query.get("status") {
        if let Ok(payment) = PaymentStatus::parse(status) {
            filter.payment_statuses = Some(vec![payment]);
        } else if let Ok(recharge) = RechargeStatus::parse(status) {
            filter.payment_statuses = Some(vec![PaymentStatus::Paid]);
            filter.recharge_statuses = Some(vec![recharge]);
        } else {
            return Err(ApiError::BadRequest(format!(
                "status {status:?} is not a payment or recharge state"
            )));
        }
    }
    if let Some(start) = query.get("startDate") {
        filter.from = Some(china_day(start, "开始日期")?.0);
    }
    if let Some(end) = query.get("endDate") {
        filter.until = Some(china_day(end, "结束日期")?.1);
    }
    let page = positive(query.get("page"), "页码必须是整数", "页码必须大于等于 1")?.unwrap_or(1);
    let limit = positive(
        query.get("limit"),
        "每页数量必须是整数",
        "每页数量必须大于等于 1",
    )?
    .unwrap_or(10);
    if page > 100_000 {
        return Err(ApiError::BadRequest("页码不能大于 100000".into()));
    }
    if limit > 100 {
        return Err(ApiError::BadRequest("每页数量不能大于 100".into()));
    }
    Ok((filter, page, limit))
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/orders/my", tag = "orders", security(("wechat_identity" = []), ("session_token" = [])), params(MyOrdersQuery),
    responses((status = 200, body = OrderPage), (status = 400, description = "Invalid filter"),
              (status = 401, description = "No WeChat identity")))]
async fn mine(
    State(ctx): State<ApiContext>,
    user: CurrentUser,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Envelope<OrderPage>, ApiError> {
    let (filter, page, limit) = list_filter(&query)?;
    let (rows, total) =
        orders::list_for_user(&ctx.db, &user.openid, &filter, limit, (page - 1) * limit).await?;
    Ok(Envelope(OrderPage {
        data: with_refunds(&ctx, rows).await?,
        pagination: Pagination {
            page,
            limit,
            total,
            total_pages: (total + limit - 1) / limit,
        },
    }))
}

/// One of the caller's orders, with its owner, and its VAT receipt once credited.
#[utoipa::path(get, path = "/orders/{orderNumber}", tag = "orders", security(("wechat_identity" = []), ("session_token" = [])),
    params(OrderNumberParam),
    responses((status = 200, body = OrderView), (status = 404, description = "No such order for this user"),
              (status = 401, description = "No WeChat identity")))]
async fn one(
    State(ctx): State<ApiContext>,
    user: CurrentUser,
    Path(order_number): Path<String>,
) -> Result<Envelope<OrderView>, ApiError> {
    let order_number = OrderNumber::parse(&order_number).map_err(|_| order_not_found())?;
    tracing::Span::current().record("order_number", order_number.as_str());
    let mut row = owned_order(&ctx, &order_number, &user).await?;
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
            .watch
            .settle_by_query(row.pay_channel, &order_number, row.amount_fen)
            .await
        {
            Ok(QueryResult::Paid(_)) => row = owned_order(&ctx, &order_number, &user).await?,
            Ok(QueryResult::NotPaid(_)) => {}
            Err(error) => tracing::warn!(%error, "payment query on read failed"),
        }
    }
    let refund = refunds::find(&ctx.db, &order_number).await?;
    let owner = users::find(&ctx.db, &user.openid).await?;
    Ok(Envelope(
        OrderView::new(row, refund).with_user(owner.appid, owner.created_at),
    ))
}

/// Cancels one of the caller's unpaid orders: closed at WeChat first (so it can no longer
/// be paid there), then here.
#[utoipa::path(post, path = "/orders/{orderNumber}/cancel", tag = "orders", security(("wechat_identity" = []), ("session_token" = [])),
    params(OrderNumberParam),
    responses((status = 200, body = OrderView), (status = 401, description = "No WeChat identity"),
              (status = 404, description = "No such order for this user"),
              (status = 409, description = "Already paid, or WeChat cannot close it yet"),
              (status = 429, description = "Too many cancellations this minute"),
              (status = 502, description = "WeChat Pay unreachable")))]
async fn cancel(
    State(ctx): State<ApiContext>,
    user: CurrentUser,
    ClientAddress(address): ClientAddress,
    Path(order_number): Path<String>,
) -> Result<Envelope<OrderView>, ApiError> {
    ctx.limiter
        .check_user(
            Route::CancelOrder,
            &ctx.config.limits,
            &user.openid,
            address,
        )
        .await?;
    let order_number = parse_order_number(&order_number)?;
    tracing::Span::current().record("order_number", order_number.as_str());
    let (row, refund) = cancel_order(&ctx, &user.openid, &order_number).await?;
    Ok(Envelope(OrderView::new(row, refund)))
}
