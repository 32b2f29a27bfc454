//! Reading a request body whole, with three bounds: its own size, a deadline, and a budget of
//! bytes shared by every body being read at once.
//!
//! Why a shared budget: a per-request cap alone lets N stalled uploads hold N × 25 MiB (100 of
//! them took the daemon to 799 MiB). Memory is reserved as the buffer grows, from what actually
//! arrived, not from `Content-Length`: a client that declares 25 MiB and sends nothing holds
//! nothing. A request that would pass the budget is answered 503, which GitHub shows as a
//! failed delivery that can be redelivered.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// The bytes of request bodies in memory at once, all requests together (`server.body_budget`).
#[derive(Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> Self {
        BodyBudget {
            permits: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Bytes not reserved by any body now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    fn reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(bytes).ok()?;
        self.permits.clone().try_acquire_many_owned(n).ok()
    }
}

/// A body read whole; its bytes stay counted in the budget until this is dropped.
pub struct HeldBody {
    pub bytes: Bytes,
    _reserved: Option<OwnedSemaphorePermit>,
}

/// Why a body could not be read; each has its own answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is larger than the {0} byte limit")]
    TooLarge(usize),
    #[error("too many request bodies are being received at once; retry later")]
    OverBudget,
    #[error("the body did not arrive within {0:?}")]
    Timeout(Duration),
    #[error("the body could not be read: {0}")]
    Broken(String),
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::OverBudget => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            BodyError::TooLarge(_) => "PAYLOAD_TOO_LARGE",
            BodyError::OverBudget => "UNAVAILABLE",
            BodyError::Timeout(_) => "REQUEST_TIMEOUT",
            BodyError::Broken(_) => "BAD_BODY",
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(error: BodyError) -> Self {
        ApiError::Status {
            status: error.status(),
            code: error.code(),
            message: error.to_string(),
        }
    }
}

/// The first reservation when the length is unknown or large: most deliveries are a few KiB.
const FIRST_RESERVATION: usize = 64 * 1024;

/// Reads `body` (of `declared` length, if the client said) whole within `deadline`, refusing
/// more than `max` bytes or more than `budget` has left.
pub async fn read_body(
    mut body: Body,
    declared: Option<usize>,
    max: usize,
    budget: &BodyBudget,
    deadline: Duration,
) -> Result<HeldBody, BodyError> {
    if declared.is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge(max));
    }
    // The buffer never grows past what the client declared (a GitHub delivery always does).
    let ceiling = declared.unwrap_or(max);
    let mut buffer: Vec<u8> = Vec::new();
    let mut reserved: Option<OwnedSemaphorePermit> = None;
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let frame = match tokio::time::timeout_at(until, body.frame()).await {
            Err(_) => return Err(BodyError::Timeout(deadline)),
            Ok(None) => break,
            Ok(Some(Err(error))) => return Err(BodyError::Broken(error.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        let needed = buffer.len() + chunk.len();
        if needed > max {
            return Err(BodyError::TooLarge(max));
        }
        if needed > buffer.capacity() {
            // Doubling keeps copies few; the reservation covers the capacity, which is what
            // the allocator holds.
            let grown = (buffer.capacity() * 2)
                .max(FIRST_RESERVATION)
                .min(ceiling)
                .max(needed);
            let more = budget
                .reserve(grown - held(&reserved))
                .ok_or(BodyError::OverBudget)?;
            match reserved.as_mut() {
                Some(permit) => permit.merge(more),
                None => reserved = Some(more),
            }
            buffer.reserve_exact(grown - buffer.len());
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(HeldBody {
        bytes: Bytes::from(buffer),
        _reserved: reserved,
    })
}

fn held(permit: &Option<OwnedSemaphorePermit>) -> usize {
    permit.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(chunks: Vec<&'static [u8]>) -> Body {
        let stream = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
        );
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn reads_within_the_bounds_and_gives_the_budget_back() {
        let budget = BodyBudget::new(1 << 20);
        let held = read_body(
            body_of(vec![b"{\"a\":", b"1}"]),
            Some(7),
            100,
            &budget,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(&held.bytes[..], b"{\"a\":1}");
        assert_eq!(
            budget.available(),
            (1 << 20) - 7,
            "capped at the declared length"
        );
        drop(held);
        assert_eq!(budget.available(), 1 << 20);
    }

    #[tokio::test]
    async fn each_bound_has_its_own_error() {
        let budget = BodyBudget::new(1 << 20);
        let big = read_body(
            body_of(vec![&[0; 10]]),
            None,
            5,
            &budget,
            Duration::from_secs(1),
        );
        assert_eq!(big.await.err(), Some(BodyError::TooLarge(5)));
        let declared = read_body(body_of(vec![]), Some(6), 5, &budget, Duration::from_secs(1));
        assert_eq!(declared.await.err(), Some(BodyError::TooLarge(5)));

        let small = BodyBudget::new(1000);
        let over = read_body(
            body_of(vec![&[0; 2000]]),
            None,
            1 << 20,
            &small,
            Duration::from_secs(1),
        );
        assert_eq!(over.await.err(), Some(BodyError::OverBudget));
        assert_eq!(small.available(), 1000, "nothing kept after a refusal");

        let (_tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
        let stalled = read_body(
            Body::from_stream(rx),
            None,
            100,
            &budget,
            Duration::from_millis(50),
        );
        assert_eq!(
            stalled.await.err(),
            Some(BodyError::Timeout(Duration::from_millis(50)))
        );

        let broken = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"{")),
            Err(std::io::Error::other("connection reset")),
        ]);
        let broken = read_body(
            Body::from_stream(broken),
            None,
            100,
            &budget,
            Duration::from_secs(1),
        );
        let error = broken.await.err().unwrap();
        assert!(matches!(error, BodyError::Broken(_)), "{error:?}");
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }
}
