//! Creating an order: the server, never the client, decides what it costs.

use shared::lifecycle::{self, NewOrder};
use shared::money::{price_in_fen, Fen, Mnt};
use shared::order::{Msisdn, OpenId, Operator, OrderNumber, RechargeType};
use shared::unitel::{UnitelClient, UnitelError};

use crate::context::ApiContext;
use crate::store::orders::{self, OrderRow};
use crate::store::rates::{self, RateError};

/// What the customer asks for, parsed.
pub struct OrderRequest {
    pub msisdn: Msisdn,
    pub operator: Operator,
    pub recharge_type: RechargeType,
    /// The card or package code; not needed for a postpaid bill.
    pub product_code: Option<String>,
}

/// Who orders.
pub struct Customer<'a> {
    pub user_id: i64,
    pub openid: &'a OpenId,
}

/// Why no order was created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("a prepaid order needs a product code")]
    NoProductCode,
    #[error("product {0} is not sold to this number")]
    NotSold(String),
    #[error("the bill is paid")]
    BillPaid,
    #[error("nothing is due on the bill")]
    NoBill,
    #[error("Unitel returned an invalid bill")]
    InvalidBill,
    #[error("Unitel: {0}")]
    Unitel(UnitelError),
    #[error(transparent)]
    Rate(#[from] RateError),
    /// The product's price cannot be paid in yuan at the current rate.
    #[error("cannot be priced in yuan")]
    Unpriceable,
    /// Created, but not found right after (it cannot be: the order is the caller's).
    #[error("the order just created was not found")]
    Vanished,
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

/// Creates the order at Unitel's price for this number, asked afresh, at our current rate.
pub async fn create_order(
    ctx: &ApiContext,
    customer: &Customer<'_>,
    request: &OrderRequest,
) -> Result<OrderRow, CreateError> {
    let product = price_product(
        &ctx.unitel,
        request.product_code.as_deref(),
        request.recharge_type,
        &request.msisdn,
    )
    .await?;
    let rate = rates::required(&ctx.db).await?.rate;
    let amount: Fen = price_in_fen(product.price, rate).map_err(|e| {
        tracing::warn!(error = %e, "product cannot be priced in yuan");
        CreateError::Unpriceable
    })?;
    let order_number = OrderNumber::generate();
    tracing::Span::current().record("order_number", order_number.as_str());
    lifecycle::create_order(
        &ctx.db,
        &NewOrder {
            order_number: &order_number,
            user_id: customer.user_id,
            openid: customer.openid,
            msisdn: &request.msisdn,
            operator: request.operator,
            recharge_type: request.recharge_type,
            product_code: &product.code,
            product_name: &product.name,
            product_eng_name: product.eng_name.as_deref(),
            product_unit: product.unit,
            product_data: product.data.as_deref(),
            product_days: product.days,
            price: product.price,
            rate,
            amount,
            channel: ctx.wechat.creating_channel(),
        },
    )
    .await?;
    tracing::info!(order_number = %order_number, amount_fen = amount.get(), "order created");
    orders::find(&ctx.db, &order_number, Some(customer.openid))
        .await?
        .ok_or(CreateError::Vanished)
}

/// A product as the order records it.
struct PricedProduct {
    code: String,
    name: String,
    eng_name: Option<String>,
    unit: Option<i32>,
    data: Option<String>,
    days: Option<i32>,
    price: Mnt,
}

/// The server, never the client, decides what an order costs: Unitel's price for this
/// number's tariff, asked afresh, at our current rate.
async fn price_product(
    unitel: &UnitelClient,
    product_code: Option<&str>,
    recharge_type: RechargeType,
    msisdn: &Msisdn,
) -> Result<PricedProduct, CreateError> {
    match recharge_type {
        RechargeType::Voice | RechargeType::Data => {
            let code = product_code
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .ok_or(CreateError::NoProductCode)?;
            let not_sold = || CreateError::NotSold(code.to_owned());
            let service = unitel
                .service_type(msisdn, "1")
                .await
                .map_err(CreateError::Unitel)?;
            let product = match recharge_type {
                RechargeType::Voice => service.find_card(code),
                _ => service.find_data_package(code),
            }
            .ok_or_else(not_sold)?;
            let small = |n: Option<i64>| n.and_then(|n| i32::try_from(n).ok());
            Ok(PricedProduct {
                code: product.code.clone(),
                name: product.name.clone(),
                eng_name: Some(product.eng_name.clone()).filter(|n| !n.is_empty()),
                unit: small(product.unit),
                data: product.data.clone(),
                days: small(product.days),
                price: Mnt::new(product.price).map_err(|_| not_sold())?,
            })
        }
        RechargeType::Postpaid => {
            let bill = unitel
                .postpaid_bill(msisdn, msisdn)
                .await
                .map_err(CreateError::Unitel)?;
            if bill.invoice_status.eq_ignore_ascii_case("paid") {
                return Err(CreateError::BillPaid);
            }
            if bill.total_unpaid <= 0 {
                return Err(CreateError::NoBill);
            }
            // As the replaced system recorded a bill: the invoice period as its code.
            let code = Some(bill.invoice_date.trim())
                .filter(|d| !d.is_empty())
                .unwrap_or("POSTPAID_BILL");
            Ok(PricedProduct {
                code: code.to_owned(),
                name: "Bill Payment".into(),
                eng_name: None,
                unit: None,
                data: Some("0".into()),
                days: None,
                price: Mnt::new(bill.total_unpaid).map_err(|_| CreateError::InvalidBill)?,
            })
        }
    }
}
