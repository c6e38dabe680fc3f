//! Routes for a person operating the service, behind `Authorization: Bearer <ADMIN_TOKEN>`:
//! an order's full history, and settling an `unknown` top-up once someone has checked with
//! Unitel what really happened.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use shared::lifecycle::{Settler, Verdict};
use shared::order::OrderNumber;
use utoipa::ToSchema;

use super::admin_input::PersonsNote;
use super::envelope::Envelope;
use super::error::ApiError;
use super::extractor::Admin;
use super::json::ApiJson;
use super::order_view::OrderView;
use super::params::{parse_order_number, OrderNumberParam};
use crate::context::ApiContext;
use crate::orders::resolve::resolve_unknown;
use crate::payments::refunds::{self, Refund};
use crate::store::history::{self, AnomalyRow, EventRow};
use crate::store::orders;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/admin/orders/{order_number}", get(order_history))
        .route("/admin/orders/{order_number}/resolve", post(resolve))
}

/// What went wrong with the top-up, as Unitel (or the person who settled it) said it:
/// for the operator only.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RechargeError {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderHistory {
    /// The order as its customer sees it.
    order: OrderView,
    openid: String,
    anomaly: Option<String>,
    recharge_error: Option<RechargeError>,
    /// The refund with its reason, who asked and WeChat's last error.
    refund: Option<Refund>,
    events: Vec<EventRow>,
    anomalies: Vec<AnomalyRow>,
}

async fn read_history(
    ctx: &ApiContext,
    order_number: &OrderNumber,
) -> Result<OrderHistory, ApiError> {
    let row = orders::find(&ctx.db, order_number, None)
        .await?
        .ok_or_else(|| ApiError::NotFound("Order not found".into()))?;
    let (openid, anomaly) = (row.openid.clone(), row.anomaly.clone());
    let recharge_error = (row.recharge_error_code.is_some()
        || row.recharge_error_message.is_some())
    .then(|| RechargeError {
        code: row.recharge_error_code.clone(),
        message: row.recharge_error_message.clone(),
    });
    let refund = refunds::find(&ctx.db, order_number).await?;
    Ok(OrderHistory {
        order: OrderView::new(row, refund.clone()),
        openid,
        anomaly,
        recharge_error,
        refund,
        events: history::events(&ctx.db, order_number).await?,
        anomalies: history::anomalies(&ctx.db, order_number).await?,
    })
}

/// An order with every transition (who, when, why) and every anomaly reported about it.
#[utoipa::path(get, path = "/admin/orders/{orderNumber}", tag = "admin",
    params(OrderNumberParam), security(("admin_token" = [])),
    responses((status = 200, body = OrderHistory), (status = 401, description = "Missing or wrong admin token"),
              (status = 404, description = "No such order")))]
async fn order_history(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    Path(order_number): Path<String>,
) -> Result<Envelope<OrderHistory>, ApiError> {
    let order_number = parse_order_number(&order_number)?;
    Ok(Envelope(read_history(&ctx, &order_number).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolveRequest {
    /// What Unitel confirmed: `success` (the number was credited) or `failed` (it was not).
    #[schema(example = "success", pattern = r"^(success|failed)$")]
    outcome: String,
    #[serde(flatten)]
    decision: PersonsNote,
}

/// Settles an `unknown` top-up as credited or failed, with a note. `failed` is refused
/// while the request marked sent could still reach Unitel (the answer says from when).
#[utoipa::path(post, path = "/admin/orders/{orderNumber}/resolve", tag = "admin",
    params(OrderNumberParam), request_body = ResolveRequest, security(("admin_token" = [])),
    responses((status = 200, body = OrderHistory), (status = 400, description = "Invalid outcome or note"),
              (status = 401, description = "Missing or wrong admin token"), (status = 404, description = "No such order"),
              (status = 409, description = "The order is not unknown, or not yet resolvable as failed")))]
async fn resolve(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    Path(order_number): Path<String>,
    ApiJson(request): ApiJson<ResolveRequest>,
) -> Result<Envelope<OrderHistory>, ApiError> {
    let order_number = parse_order_number(&order_number)?;
    let (note, name) = request.decision.read()?;
    let verdict = match request.outcome.as_str() {
        "success" => Verdict::Credited,
        "failed" => Verdict::NotCredited {
            reason: note.to_owned(),
        },
        _ => {
            return Err(ApiError::BadRequest(
                "outcome must be success or failed".into(),
            ))
        }
    };
    let settler = Settler::Person {
        name: name.clone(),
        note: note.to_owned(),
    };
    resolve_unknown(&ctx, &order_number, &verdict, &settler).await?;
    tracing::info!(order_number = %order_number, outcome = %request.outcome, by = %name, "unknown top-up resolved by a person");
    Ok(Envelope(read_history(&ctx, &order_number).await?))
}
