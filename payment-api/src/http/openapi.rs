//! The OpenAPI document, generated from the handlers' annotations, at `/api-json`, and
//! Swagger UI at `/api` (assets vendored into the binary: no CDN).

use axum::Router;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(title = "eLife top-up API", description = "Unitel mobile top-ups paid with WeChat Pay"),
    paths(
        super::health::health,
        super::exchange_rate::current,
        super::products::services,
        super::products::postpaid_bill,
        super::orders::create,
        super::orders::mine,
        super::orders::one,
        super::payment::create,
        super::callback::callback_for_order,
    ),
    tags(
        (name = "products", description = "What a number can buy, priced in yuan"),
        (name = "orders", description = "The caller's orders (identity from the WeChat gateway)"),
        (name = "payment", description = "WeChat Pay"),
        (name = "operations", description = "Health"),
    )
)]
pub struct ApiDoc;

pub fn router() -> Router {
    SwaggerUi::new("/api")
        .url("/api-json", ApiDoc::openapi())
        .into()
}
