//! The operator's page (`GET /admin`), its script and style, all compiled into the binary:
//! no CDN, nothing fetched from elsewhere. The page itself holds no data; everything it
//! shows comes from admin routes with the token the operator types.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::context::ApiContext;

const PAGE: &str = include_str!("../../assets/admin/index.html");
const SCRIPT: &str = include_str!("../../assets/admin/app.js");
const STYLE: &str = include_str!("../../assets/admin/app.css");
/// Only this origin's script and style, no framing: the page handles a bearer token.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'";
pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/admin", get(page))
        .route("/admin/app.js", get(script))
        .route("/admin/app.css", get(style))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

async fn page() -> impl IntoResponse {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}
