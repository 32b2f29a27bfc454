//! Browser safety in the open mode (no `server.api_tokens`): any web page a user visits can make
//! their browser send requests to `http://127.0.0.1:3000`. Three defences, none of which a
//! non-browser client (curl, GitHub, Prometheus) notices:
//!
//! - **Host** (DNS rebinding: a page on `evil.example` whose name then resolves to 127.0.0.1
//!   reads the API as same-origin): the API, `/ws` and the dashboard answer 421 unless `Host`
//!   names the listen address, a loopback address, `localhost` or `server.public_url`'s host.
//!   The webhook (HMAC protects it), `/healthz`, `/readyz` and `/metrics` are exempt, so proxies
//!   and load-balancer probes with any `Host` keep working.
//! - **Cross-site writes** (a form post from another site): a state-changing API call whose
//!   `Origin` is not the daemon's own (or `public_url`'s, or in `server.allowed_origins`), or
//!   whose `Sec-Fetch-Site` says another site, gets 403; one with a body that is not
//!   `application/json` (the only types a form can send without a CORS preflight are not JSON)
//!   gets 415. Bodiless calls (`curl -X POST …/api/webhooks/test`) pass.
//! - **`/ws` Origin**: checked in [`super::ws`], refused with a close frame (4403).
//!
//! With API tokens set, none of this applies: a browser does not attach a bearer token by itself.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::app::AppState;
use crate::config::ServerConfig;

/// Host, then (for state-changing calls) origin and content type; see the module docs.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let config = state.config();
    if !config.server.api_tokens.is_empty() {
        return next.run(request).await;
    }
    if let Err(refusal) = check(
        &config.server,
        state.local_addr,
        request.method(),
        request.headers(),
        request.uri().authority().map(|a| a.as_str()),
    ) {
        return refusal.into_response();
    }
    next.run(request).await
}

/// The checks of [`guard`], without the server: `authority` is the request target's (HTTP/2).
fn check(
    server: &ServerConfig,
    listen: SocketAddr,
    method: &Method,
    headers: &HeaderMap,
    authority: Option<&str>,
) -> Result<(), ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(authority)
        .unwrap_or("");
    if !host_allowed(server, listen, host) {
        return Err(ApiError::Status {
            status: StatusCode::MISDIRECTED_REQUEST,
            code: "MISDIRECTED_REQUEST",
            message: format!(
                "Host `{}` is not this daemon's: without server.api_tokens only the listen \
                 address, localhost and server.public_url's host are answered",
                printable(host)
            ),
        });
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not text)");
        if !origin_allowed(server, host, origin) {
            return Err(forbidden(format!(
                "a {method} from origin `{}` is refused: add it to server.allowed_origins, or set \
                 server.api_tokens",
                printable(origin)
            )));
        }
    } else if let Some(site) = headers.get("sec-fetch-site") {
        // Sent by browsers; `none` is the user's own action (address bar, bookmark).
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return Err(forbidden(format!(
                "a {method} from another site (Sec-Fetch-Site: {}) is refused",
                printable(site.to_str().unwrap_or("?"))
            )));
        }
    }
    if has_body(headers) && !is_json(headers) {
        return Err(ApiError::Status {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "UNSUPPORTED_MEDIA_TYPE",
            message: format!(
                "a {method} with a body must send Content-Type: application/json (got `{}`)",
                printable(
                    headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("(none)")
                )
            ),
        });
    }
    Ok(())
}

fn forbidden(message: String) -> ApiError {
    ApiError::Status {
        status: StatusCode::FORBIDDEN,
        code: "CROSS_SITE_REFUSED",
        message,
    }
}

/// At most 100 characters of attacker-chosen text in an answer.
fn printable(text: &str) -> String {
    text.chars().take(100).filter(|c| !c.is_control()).collect()
}

fn has_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    headers.contains_key(header::TRANSFER_ENCODING) || length.is_some_and(|n| n != "0")
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// `example.com:3000` → `example.com`; `[::1]:3000` → `::1`; lower case.
pub fn hostname(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The host name of `server.public_url`, if set.
fn public_host(server: &ServerConfig) -> Option<String> {
    let url = reqwest::Url::parse(server.public_url.as_deref()?).ok()?;
    url.host_str().map(hostname)
}

/// The `scheme://host[:port]` of `server.public_url`, if set.
fn public_origin(server: &ServerConfig) -> Option<String> {
    let url = reqwest::Url::parse(server.public_url.as_deref()?).ok()?;
    Some(url.origin().ascii_serialization())
}

fn host_allowed(server: &ServerConfig, listen: SocketAddr, host: &str) -> bool {
    let name = hostname(host);
    if name == "localhost" {
        return true;
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        // An address is never a rebinding attack (that needs a name the attacker controls);
        // on 0.0.0.0 every address of the machine is the daemon's own.
        return ip.is_loopback() || ip == listen.ip() || listen.ip().is_unspecified();
    }
    public_host(server).is_some_and(|public| public == name)
}

/// Same origin as the request's `Host`, `public_url`'s origin, or one of `allowed_origins`.
pub fn origin_allowed(server: &ServerConfig, host: &str, origin: &str) -> bool {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let host = host.trim().to_ascii_lowercase();
    if !host.is_empty()
        && (origin == format!("http://{host}") || origin == format!("https://{host}"))
    {
        return true;
    }
    public_origin(server).is_some_and(|o| o == origin)
        || server
            .allowed_origins
            .iter()
            .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(&origin))
}

#[cfg(test)]
mod tests;
