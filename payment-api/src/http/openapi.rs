//! The OpenAPI document, generated from the handlers' annotations, at `/api-json`, and
//! Swagger UI at `/api` (assets vendored into the binary: no CDN).

use axum::Router;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
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
        super::admin::order_history,
        super::admin::resolve,
    ),
    modifiers(&AdminTokenScheme),
    tags(
        (name = "products", description = "What a number can buy, priced in yuan"),
        (name = "orders", description = "The caller's orders (identity from the WeChat gateway)"),
        (name = "payment", description = "WeChat Pay"),
        (name = "operations", description = "Health"),
        (name = "admin", description = "For operators: bearer ADMIN_TOKEN"),
    )
)]
pub struct ApiDoc;

struct AdminTokenScheme;

impl Modify for AdminTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

pub fn router() -> Router {
    SwaggerUi::new("/api")
        .url("/api-json", ApiDoc::openapi())
        .into()
}
