//! Reading an order's state, to tell why a claim was refused. Every change of state is a
//! transition in [`shared::lifecycle`].

use shared::order::{OrderNumber, PaymentStatus, RechargeStatus};
use sqlx::PgPool;

pub struct OrderState {
    pub payment_status: PaymentStatus,
    pub recharge_status: RechargeStatus,
    pub recharge_worker: Option<String>,
}

pub async fn state(
    db: &PgPool,
    order_number: &OrderNumber,
) -> Result<Option<OrderState>, sqlx::Error> {
    sqlx::query_as!(
        OrderState,
        r#"SELECT payment_status AS "payment_status: _", recharge_status AS "recharge_status: _",
                  recharge_worker
             FROM orders WHERE order_number = $1"#,
        order_number.as_str(),
    )
    .fetch_optional(db)
    .await
}
