//! Reading an order's history and the anomalies reported about it (both written only by
//! [`shared::lifecycle`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::history::{Actor, AnomalyKind, OrderEvent};
use shared::order::OrderNumber;
use sqlx::PgPool;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    #[schema(value_type = String, example = "paid")]
    pub event: OrderEvent,
    #[schema(value_type = String, example = "wechat-callback")]
    pub actor: Actor,
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnomalyRow {
    #[schema(value_type = String, example = "amount_mismatch")]
    pub kind: AnomalyKind,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

pub async fn events(db: &PgPool, order_number: &OrderNumber) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as!(
        EventRow,
        r#"SELECT event AS "event: _", actor AS "actor: _", detail, created_at
             FROM order_events WHERE order_number = $1 ORDER BY id"#,
        order_number.as_str(),
    )
    .fetch_all(db)
    .await
}

pub async fn anomalies(
    db: &PgPool,
    order_number: &OrderNumber,
) -> Result<Vec<AnomalyRow>, sqlx::Error> {
    sqlx::query_as!(
        AnomalyRow,
        r#"SELECT kind AS "kind: _", detail, created_at
             FROM payment_anomalies WHERE order_number = $1 ORDER BY id"#,
        order_number.as_str(),
    )
    .fetch_all(db)
    .await
}
