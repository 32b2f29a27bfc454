//! The checks a delivery passes before it is stored: headers, content type, signature,
//! JSON well-formedness. Pure functions over the request parts, so they are tested
//! without a server.

use chrono::{DateTime, Utc};
use http::HeaderMap;

use super::payload_codec::Payload;
use super::signature::{self, SignatureError};
use crate::config::Secret;

/// The bytes of an unverified body kept in the audit log. Forged requests are evidence, but
/// anyone can send them without a secret: 64 KiB each let 2,000 of them add 230 MB. The first
/// 2 KiB show what was attempted; the outcome adds the whole body's length and SHA-256, so a
/// repeated forgery is still recognisable.
pub const UNVERIFIED_BODY_KEEP_BYTES: usize = 2 * 1024;

/// A request refused before it is stored, with the status and message to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("header {0} is not valid: {1}")]
    BadHeader(&'static str, String),
    #[error(
        "unsupported content type `{0}`: send application/json or application/x-www-form-urlencoded"
    )]
    UnsupportedMediaType(String),
    #[error("body is larger than the {0} byte limit")]
    TooLarge(usize),
    #[error("{0}")]
    Signature(#[from] SignatureError),
    #[error("body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("form body has no `payload` field")]
    MissingFormPayload,
}

impl Rejection {
    /// The HTTP status of the answer: always a 4xx.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Rejection::MissingHeader(_) | Rejection::BadHeader(..) => StatusCode::BAD_REQUEST,
            Rejection::MalformedJson(_) | Rejection::MissingFormPayload => StatusCode::BAD_REQUEST,
            Rejection::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::Signature(_) => StatusCode::UNAUTHORIZED,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MissingHeader(_) | Rejection::BadHeader(..) => "BAD_HEADER",
            Rejection::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Rejection::TooLarge(_) => "PAYLOAD_TOO_LARGE",
            Rejection::Signature(_) => "INVALID_SIGNATURE",
            Rejection::MalformedJson(_) | Rejection::MissingFormPayload => "MALFORMED_PAYLOAD",
        }
    }
}

/// A delivery that passed every check, ready for the durable log.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub repository: Option<String>,
    /// The JSON payload as GitHub sent it (for form bodies, the decoded `payload` field),
    /// compressed for storage.
    pub payload: Payload,
    pub signature_valid: bool,
    pub received_at: DateTime<Utc>,
    /// Set for deliveries that need no processing (unknown events, refused signatures):
    /// they are stored already processed with this outcome.
    pub settled: Option<Settled>,
}

/// An outcome decided at intake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Ignored(String),
    Rejected(String),
}

/// The routing headers every delivery must carry.
#[derive(Debug, Clone)]
pub struct DeliveryHeaders {
    pub event: String,
    pub delivery_id: String,
}

/// `X-GitHub-Event` and `X-GitHub-Delivery`, present and sane.
pub fn routing_headers(headers: &HeaderMap) -> Result<DeliveryHeaders, Rejection> {
    let event = header_text(headers, "X-GitHub-Event")?;
    let delivery_id = header_text(headers, "X-GitHub-Delivery")?;
    let is_token = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    if !is_token(&event, 64) {
        return Err(Rejection::BadHeader(
            "X-GitHub-Event",
            "expected an event name like workflow_job".into(),
        ));
    }
    if !is_token(&delivery_id, 128) {
        return Err(Rejection::BadHeader(
            "X-GitHub-Delivery",
            "expected a delivery GUID".into(),
        ));
    }
    Ok(DeliveryHeaders { event, delivery_id })
}

fn header_text(headers: &HeaderMap, name: &'static str) -> Result<String, Rejection> {
    let value = headers.get(name).ok_or(Rejection::MissingHeader(name))?;
    let text = value
        .to_str()
        .map_err(|_| Rejection::BadHeader(name, "not ASCII text".into()))?;
    Ok(text.trim().to_owned())
}

/// How the JSON is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    Json,
    Form,
}

pub fn body_encoding(headers: &HeaderMap) -> Result<BodyEncoding, Rejection> {
    let raw = headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"))
        .unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(BodyEncoding::Json),
        "application/x-www-form-urlencoded" => Ok(BodyEncoding::Form),
        "" => Err(Rejection::UnsupportedMediaType("(none)".into())),
        _ => Err(Rejection::UnsupportedMediaType(
            raw.chars().take(100).collect(),
        )),
    }
}

/// The JSON text of the body.
pub fn json_text(encoding: BodyEncoding, body: &[u8]) -> Result<String, Rejection> {
    let bytes = match encoding {
        BodyEncoding::Json => body.to_vec(),
        BodyEncoding::Form => form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_owned().into_bytes())
            .ok_or(Rejection::MissingFormPayload)?,
    };
    String::from_utf8(bytes).map_err(|_| Rejection::MalformedJson("not UTF-8".into()))
}

/// The few fields the log indexes on, parsed without building the whole document.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    action: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    repository: Option<RepoRef<'a>>,
    /// Only its labels, which are bounded at intake (see [`crate::domain::check_job_labels`]).
    #[serde(borrow)]
    workflow_job: Option<JobLabels<'a>>,
}

#[derive(serde::Deserialize)]
struct JobLabels<'a> {
    #[serde(borrow, default)]
    labels: Vec<std::borrow::Cow<'a, str>>,
}

/// What [`envelope`] reads of a delivery.
#[derive(Debug, Default)]
pub struct EnvelopeFields {
    pub action: Option<String>,
    pub repository: Option<String>,
    /// Why the `workflow_job` labels are refused for scheduling, if they are.
    pub labels_refused: Option<String>,
}

#[derive(serde::Deserialize)]
struct RepoRef<'a> {
    #[serde(borrow)]
    full_name: Option<std::borrow::Cow<'a, str>>,
}

/// `action`, `repository.full_name` and the labels' verdict; fails on malformed JSON or a
/// non-object body.
pub fn envelope(json: &str) -> Result<EnvelopeFields, Rejection> {
    let env: Envelope<'_> =
        serde_json::from_str(json).map_err(|e| Rejection::MalformedJson(e.to_string()))?;
    Ok(EnvelopeFields {
        action: env.action.map(|a| a.into_owned()),
        repository: env
            .repository
            .and_then(|r| r.full_name)
            .map(|n| n.into_owned()),
        labels_refused: env
            .workflow_job
            .and_then(|job| crate::domain::check_job_labels(&job.labels).err()),
    })
}

/// The checks that need no body, made before it is read: routing headers, content type, and a
/// signature header when one is required. A missing signature is recorded like a wrong one
/// (with no body: it was not read).
pub fn check_head(
    headers: &HeaderMap,
    secrets: &[Secret],
    allow_unsigned: bool,
    now: DateTime<Utc>,
) -> Result<(), (Rejection, Option<Box<NewDelivery>>)> {
    let routing = routing_headers(headers).map_err(|r| (r, None))?;
    body_encoding(headers).map_err(|r| (r, None))?;
    let signed = headers.contains_key("X-Hub-Signature-256");
    if signed || (allow_unsigned && secrets.is_empty()) {
        return Ok(());
    }
    let e = SignatureError::Missing;
    let attempt = Box::new(NewDelivery {
        delivery_id: routing.delivery_id,
        event: routing.event,
        action: None,
        repository: None,
        payload: Payload::compress(""),
        signature_valid: false,
        received_at: now,
        settled: Some(Settled::Rejected(format!("{e} (body not read)"))),
    });
    Err((Rejection::Signature(e), Some(attempt)))
}

/// Runs every check on a request and builds the log row, or says why not.
///
/// A bad signature is both: the caller answers 401 *and* records the attempt (with
/// `signature_valid = false`, settled as rejected, payload truncated), hence the pair.
pub fn check(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
    allow_unsigned: bool,
    now: DateTime<Utc>,
) -> Result<NewDelivery, (Rejection, Option<Box<NewDelivery>>)> {
    let routing = routing_headers(headers).map_err(|r| (r, None))?;
    let encoding = body_encoding(headers).map_err(|r| (r, None))?;
    let signature_header = headers
        .get("X-Hub-Signature-256")
        .and_then(|v| v.to_str().ok());
    let unsigned_ok = allow_unsigned && secrets.is_empty() && signature_header.is_none();
    if !unsigned_ok && let Err(e) = signature::verify(secrets, body, signature_header) {
        let kept = &body[..body.len().min(UNVERIFIED_BODY_KEEP_BYTES)];
        let attempt = Box::new(NewDelivery {
            delivery_id: routing.delivery_id,
            event: routing.event,
            action: None,
            repository: None,
            payload: Payload::compress(&String::from_utf8_lossy(kept)),
            signature_valid: false,
            received_at: now,
            settled: Some(Settled::Rejected(format!(
                "{e} (body {} bytes, sha256 {}; first {} kept)",
                body.len(),
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body)),
                kept.len()
            ))),
        });
        return Err((Rejection::Signature(e), Some(attempt)));
    }
    let json = json_text(encoding, body).map_err(|r| (r, None))?;
    let fields = envelope(&json).map_err(|r| (r, None))?;
    let settled = if !super::HANDLED_EVENTS.contains(&routing.event.as_str()) {
        Some(Settled::Ignored(format!(
            "event `{}` is not handled",
            routing.event
        )))
    } else if routing.event == "workflow_job"
        && let Some(why) = fields.labels_refused
    {
        // Recorded (the audit log keeps it) but never scheduled: no job is created from it.
        Some(Settled::Ignored(format!("refused for scheduling: {why}")))
    } else {
        None
    };
    Ok(NewDelivery {
        delivery_id: routing.delivery_id,
        event: routing.event,
        action: fields.action,
        repository: fields.repository,
        payload: Payload::compress(&json),
        signature_valid: true,
        received_at: now,
        settled,
    })
}

#[cfg(test)]
mod tests;
