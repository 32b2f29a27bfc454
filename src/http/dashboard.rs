//! `GET /`: the operator dashboard. Static assets compiled into the binary (no build step, no
//! CDN, charts drawn by its own script); the page holds no data itself and gets everything
//! from `GET /ws`, and its history charts from `GET /api/history`.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::app::AppState;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const CHARTS_JS: &str = include_str!("dashboard/charts.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// Same-origin everything: the page talks only to the daemon that served it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `/`, `/dashboard/app.js`, `/dashboard/charts.js`, `/dashboard/style.css`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/dashboard/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/dashboard/charts.js",
            get(|| asset("text/javascript; charset=utf-8", CHARTS_JS)),
        )
        .route(
            "/dashboard/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE_CSS)),
        )
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Revalidated on each load so an upgraded daemon never runs yesterday's script.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}
