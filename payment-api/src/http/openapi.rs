//! The OpenAPI document, generated from the handlers' annotations, at `/api-json`, and
//! Swagger UI at `/api` (assets vendored into the binary: no CDN).

use axum::Router;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, HttpBuilder, SecurityScheme,
};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};
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
        super::payment_callback::callback_for_order,
        super::payment_callback::callback_bare,
        super::payment_notify::payment_notify,
        super::payment_notify::refund_notify,
        super::admin::order_history,
        super::admin::resolve,
        super::orders::cancel,
        super::refund::request_refund,
        super::refund::refund_callback,
        super::stats::statistics,
        super::legacy_stats::overview,
        super::legacy_stats::users,
        super::legacy_stats::orders,
        super::legacy_stats::revenue,
        super::attention::attention,
        super::refund::retry_refund,
        super::exchange_rate::set_exchange_rate,
        super::reconciliation::read,
        super::reconciliation::run,
        super::reconciliation::resolve,
        super::auth::login,
        super::auth::logout,
    ),
    modifiers(&SecuritySchemes, &ResponseEnvelopes),
    tags(
        (name = "products", description = "What a number can buy, priced in yuan"),
        (name = "auth", description = "Direct mode (WECHAT_PAY_MODE=direct) only: our own sessions from wx.login; cloud mode answers 404"),
        (name = "orders", description = "The caller's orders (identity from the WeChat gateway, or in direct mode a session token)"),
        (name = "payment", description = "WeChat Pay"),
        (name = "operations", description = "Health"),
        (name = "admin", description = "For operators: bearer ADMIN_TOKEN"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "session_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                "Direct mode (WECHAT_PAY_MODE=direct): the token POST /auth/login returned. \
                 It replaces wechat_identity there, whose headers are then ignored.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "wechat_identity",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-WX-OPENID",
                "The caller's openid, injected by the WeChat Cloud Hosting gateway together \
                 with X-WX-SOURCE (X-WX-FROM-OPENID wins when both are sent). Never set by \
                 the mini-program itself: public-domain access must be off.",
            ))),
        );
    }
}

/// The error body of every route but the WeChat callback.
#[derive(ToSchema)]
#[allow(dead_code)]
struct ErrorBody {
    /// The HTTP status again.
    #[schema(example = 400)]
    code: u16,
    #[schema(example = "充值手机号必须是字符串, 充值手机号不能为空")]
    message: String,
    #[schema(value_type = Option<Object>)]
    data: Option<()>,
    timestamp: String,
    path: String,
}

/// Documents the response envelope once, for every route, instead of in each annotation:
/// success bodies are wrapped in `{code, data, message, timestamp}`, error statuses get the
/// error body, and every route documents the 400 (and, with a body, the 413) any input
/// can earn, every admin route the 429 of `ADMIN_FAILURES_PER_MINUTE`. The WeChat callback answers in WeChat's own format and is left alone.
struct ResponseEnvelopes;

impl Modify for ResponseEnvelopes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert("ErrorBody".to_owned(), ErrorBody::schema());
        for (path, item) in openapi.paths.paths.iter_mut() {
            if path.starts_with("/payment/callback") || path.starts_with("/payment/refund-callback")
            {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let has_body = operation.request_body.is_some();
                let admin_only = requires_admin_token(operation);
                let responses = &mut operation.responses.responses;
                for (status, response) in responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if status.starts_with('2') || path == "/health" {
                        for content in response.content.values_mut() {
                            if let Some(data) = content.schema.take() {
                                content.schema = Some(enveloped(data));
                            }
                        }
                    } else {
                        set_error_content(response);
                    }
                }
                let mut ensure = |status: &str, description: &str| {
                    responses.entry(status.to_owned()).or_insert_with(|| {
                        let mut response = Response::new(description);
                        set_error_content(&mut response);
                        RefOr::T(response)
                    });
                };
                ensure("400", "Invalid input");
                if admin_only {
                    ensure(
                        "429",
                        "Too many wrong admin tokens from this address this minute",
                    );
                }
                if has_body {
                    ensure("413", "Request body too large");
                }
            }
        }
    }
}

fn requires_admin_token(operation: &utoipa::openapi::path::Operation) -> bool {
    // `SecurityRequirement` keeps its scheme names private; its JSON form names them.
    operation.security.as_ref().is_some_and(|requirements| {
        requirements.iter().any(|requirement| {
            serde_json::to_value(requirement).is_ok_and(|value| value.get("admin_token").is_some())
        })
    })
}

fn enveloped(data: RefOr<Schema>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .examples([200]),
        )
        .required("code")
        .property("data", data)
        .required("data")
        .property(
            "message",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .examples(["success"]),
        )
        .required("message")
        .property("timestamp", ObjectBuilder::new().schema_type(Type::String))
        .required("timestamp")
        .into()
}

fn set_error_content(response: &mut Response) {
    response.content.clear();
    response.content.insert(
        "application/json".to_owned(),
        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
    );
}

pub fn router() -> Router {
    SwaggerUi::new("/api")
        .url("/api-json", ApiDoc::openapi())
        .into()
}
