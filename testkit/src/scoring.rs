//! A stand-in for the external scoring API: `POST /score` with
//! `{"assessment": {...}, "history": [...], "timestamp": ms}` answers
//! `{"score", "band", "historyCount", "model"}`, computed from the
//! assessment's `rawData` (`itemsCorrect` / `itemsAttempted`, or
//! `wordsRead` / `errors` / `seconds` for fluency). Data it cannot score is
//! answered 422; a wrong or missing bearer key, 401.
//!
//! It counts requests per 1-second window (fixed windows since start, and
//! the peak over any sliding second) and can inject 429 (with
//! `Retry-After`), 500, slow answers, and a fixed status for chosen
//! assessment ids. `GET /stats` shows the counts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};

use crate::faults::Trigger;
use crate::http::LocalServer;

/// Fixed windows kept for `per_second` (the last hour).
const WINDOWS_KEPT: usize = 3600;
/// Arrival times kept for the sliding-second peak.
const SLIDING_KEPT: usize = 100_000;

#[derive(Debug, Clone, Default)]
pub struct ScoringStandInConfig {
    /// The bearer key requests must carry; `None` accepts any.
    pub api_key: Option<String>,
    /// Count answers per assessment id (tests). Off for long runs: the map
    /// grows with every id.
    pub track_ids: bool,
    /// 0: any free port.
    pub port: u16,
}

/// Faults to inject, shared by every request.
#[derive(Debug, Default)]
pub struct ScoringFaults {
    /// Answer 429 with `Retry-After: retry_after_secs`.
    pub throttle: Trigger,
    /// Answer 500.
    pub server_error: Trigger,
    /// Answer after `slow_ms`.
    pub slow: Trigger,
    slow_ms: AtomicU64,
    retry_after_secs: AtomicU64,
    /// `Retry-After` as an HTTP date (now + `retry_after_secs`) instead of seconds.
    retry_after_as_date: std::sync::atomic::AtomicBool,
    /// A fixed status for these assessment ids, whatever else happens (no
    /// transient fault is spent on them).
    fail_ids: Mutex<HashMap<String, u16>>,
    /// A fixed score in the answer for these assessment ids.
    scores: Mutex<HashMap<String, f64>>,
}

impl ScoringFaults {
    pub fn set_slow_ms(&self, ms: u64) {
        self.slow_ms.store(ms, Ordering::SeqCst);
    }

    pub fn set_retry_after_secs(&self, secs: u64) {
        self.retry_after_secs.store(secs, Ordering::SeqCst);
    }

    /// Send `Retry-After` as an HTTP date rather than seconds.
    pub fn set_retry_after_as_date(&self, as_date: bool) {
        self.retry_after_as_date.store(as_date, Ordering::SeqCst);
    }

    /// Answer 200 with this score for this assessment id (e.g. one DynamoDB cannot store).
    pub fn answer_score(&self, assessment_id: &str, score: f64) {
        self.scores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(assessment_id.to_owned(), score);
    }

    /// Whether `body` is about an assessment with a fixed status.
    fn is_fixed(&self, body: &[u8]) -> bool {
        let fixed = self.fail_ids.lock().unwrap_or_else(|p| p.into_inner());
        if fixed.is_empty() {
            return false;
        }
        let request = serde_json::from_slice::<Value>(body).unwrap_or_default();
        (request["assessment"]["assessmentId"].as_str()).is_some_and(|id| fixed.contains_key(id))
    }

    /// Always answer `status` for this assessment id.
    pub fn fail_assessment(&self, assessment_id: &str, status: u16) {
        self.fail_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(assessment_id.to_owned(), status);
    }

    pub fn clear(&self) {
        self.throttle.clear();
        self.server_error.clear();
        self.slow.clear();
        self.set_slow_ms(0);
        self.set_retry_after_secs(0);
        self.set_retry_after_as_date(false);
        self.scores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.fail_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// What the stand-in saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScoringStats {
    pub requests: u64,
    /// Answered 200.
    pub scored: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// The most requests in one fixed 1-second window.
    pub peak_per_second: u64,
    /// The most requests within any 1 second (sliding).
    pub peak_sliding_second: u64,
    /// Requests per fixed 1-second window since start (the last hour).
    pub per_second: Vec<u64>,
    /// With `track_ids`: assessments answered 200 more than once.
    pub scored_more_than_once: u64,
    pub distinct_scored: u64,
}

#[derive(Debug, Default)]
struct Counts {
    requests: u64,
    scored: u64,
    statuses: BTreeMap<u16, u64>,
    /// (window index since start, requests in it)
    windows: VecDeque<(u64, u64)>,
    peak_per_second: u64,
    arrivals: VecDeque<Instant>,
    peak_sliding_second: u64,
    scored_ids: HashMap<String, u64>,
    /// With `track_ids`: the `Idempotency-Key`s each assessment came with.
    idempotency_keys: HashMap<String, std::collections::BTreeSet<String>>,
}

struct StandInState {
    config: ScoringStandInConfig,
    faults: ScoringFaults,
    counts: Mutex<Counts>,
    started: Instant,
}

/// The running stand-in; stops when dropped.
pub struct ScoringStandIn {
    server: LocalServer,
    state: Arc<StandInState>,
}

impl std::fmt::Debug for ScoringStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoringStandIn")
            .field("url", &self.server.url())
            .finish_non_exhaustive()
    }
}

impl ScoringStandIn {
    pub async fn start(config: ScoringStandInConfig) -> Result<Self, String> {
        let port = config.port;
        let state = Arc::new(StandInState {
            config,
            faults: ScoringFaults::default(),
            counts: Mutex::new(Counts::default()),
            started: Instant::now(),
        });
        let app = axum::Router::new()
            .route("/score", post(score))
            .route("/stats", get(stats))
            .with_state(Arc::clone(&state));
        let server = LocalServer::start(app, port, "scoring API stand-in").await?;
        Ok(ScoringStandIn { server, state })
    }

    /// The base URL (`SCORING_API_URL`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn faults(&self) -> &ScoringFaults {
        &self.state.faults
    }

    pub fn stats(&self) -> ScoringStats {
        self.state.stats()
    }

    /// With `track_ids`: how many times this assessment was answered 200.
    pub fn times_scored(&self, assessment_id: &str) -> u64 {
        let counts = self.state.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.scored_ids.get(assessment_id).copied().unwrap_or(0)
    }

    /// With `track_ids`: the distinct `Idempotency-Key`s requests about this
    /// assessment carried (one, however often it was sent, if the client is right).
    pub fn idempotency_keys(&self, assessment_id: &str) -> Vec<String> {
        let counts = self.state.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .idempotency_keys
            .get(assessment_id)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Zeroes the counts (not the faults).
    pub fn reset_stats(&self) {
        *self.state.counts.lock().unwrap_or_else(|p| p.into_inner()) = Counts::default();
    }
}

impl StandInState {
    fn count_arrival(&self) {
        let now = Instant::now();
        let window = now.duration_since(self.started).as_secs();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.requests += 1;
        match counts.windows.back_mut() {
            Some((index, n)) if *index == window => *n += 1,
            _ => counts.windows.push_back((window, 1)),
        }
        if counts.windows.len() > WINDOWS_KEPT {
            counts.windows.pop_front();
        }
        let current = counts.windows.back().map_or(0, |w| w.1);
        counts.peak_per_second = counts.peak_per_second.max(current);
        while counts
            .arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            counts.arrivals.pop_front();
        }
        counts.arrivals.push_back(now);
        if counts.arrivals.len() > SLIDING_KEPT {
            counts.arrivals.pop_front();
        }
        counts.peak_sliding_second = counts.peak_sliding_second.max(counts.arrivals.len() as u64);
    }

    fn count_answer(&self, status: StatusCode, scored_id: Option<&str>) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.statuses.entry(status.as_u16()).or_insert(0) += 1;
        if let Some(id) = scored_id {
            counts.scored += 1;
            if self.config.track_ids {
                *counts.scored_ids.entry(id.to_owned()).or_insert(0) += 1;
            }
        }
    }

    fn stats(&self) -> ScoringStats {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut per_second = Vec::new();
        if let (Some(first), Some(last)) = (counts.windows.front(), counts.windows.back()) {
            per_second = vec![0; (last.0 - first.0 + 1) as usize];
            for (index, n) in &counts.windows {
                per_second[(index - first.0) as usize] = *n;
            }
        }
        ScoringStats {
            requests: counts.requests,
            scored: counts.scored,
            statuses: counts.statuses.clone(),
            peak_per_second: counts.peak_per_second,
            peak_sliding_second: counts.peak_sliding_second,
            per_second,
            scored_more_than_once: counts.scored_ids.values().filter(|n| **n > 1).count() as u64,
            distinct_scored: counts.scored_ids.len() as u64,
        }
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn score(
    State(state): State<Arc<StandInState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    state.count_arrival();
    let faults = &state.faults;
    // An assessment with a fixed status never takes a transient fault (slow,
    // throttled), whatever order concurrent requests arrive in: what a test
    // counts does not depend on which request came first.
    if !faults.is_fixed(&body) && faults.slow.fires() {
        tokio::time::sleep(Duration::from_millis(faults.slow_ms.load(Ordering::SeqCst))).await;
    }
    let (status, response) = respond(&state, &headers, &body);
    let scored_id = (status == StatusCode::OK)
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten()
        .and_then(|b| b["assessment"]["assessmentId"].as_str().map(str::to_owned));
    state.count_answer(status, scored_id.as_deref());
    response
}

fn respond(state: &StandInState, headers: &HeaderMap, body: &[u8]) -> (StatusCode, Response) {
    let refuse =
        |status: StatusCode, message: &str| (status, answer(status, json!({"message": message})));
    if let Some(key) = &state.config.api_key {
        let expected = format!("Bearer {key}");
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            return refuse(StatusCode::UNAUTHORIZED, "missing or wrong API key");
        }
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return refuse(StatusCode::BAD_REQUEST, "body is not JSON");
    };
    let assessment = &request["assessment"];
    let (Some(assessment_id), Some(student_id), Some(history)) = (
        assessment["assessmentId"].as_str(),
        assessment["studentId"].as_str(),
        request["history"].as_array(),
    ) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "expected {assessment: {assessmentId, studentId, ...}, history: [...]}",
        );
    };
    if headers.get("x-student-id").and_then(|v| v.to_str().ok()) != Some(student_id) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "X-Student-Id does not match the assessment",
        );
    }
    // Like payment-style APIs: every request names its operation, so a retry
    // or a redelivery can be recognised.
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
    else {
        return refuse(StatusCode::BAD_REQUEST, "Idempotency-Key is required");
    };
    if state.config.track_ids {
        let mut counts = state.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .idempotency_keys
            .entry(assessment_id.to_owned())
            .or_default()
            .insert(key.to_owned());
    }
    let fixed = state
        .faults
        .fail_ids
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(assessment_id)
        .copied();
    if let Some(code) = fixed {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return refuse(status, "injected failure for this assessment");
    }
    if state.faults.throttle.fires() {
        let mut response = answer(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"message": "rate limit exceeded (injected)"}),
        );
        let after = state.faults.retry_after_secs.load(Ordering::SeqCst);
        let text = if state.faults.retry_after_as_date.load(Ordering::SeqCst) {
            // An HTTP date has whole seconds: round up so the wait is at least `after`.
            httpdate::fmt_http_date(
                std::time::SystemTime::now() + Duration::from_secs(after.saturating_add(1)),
            )
        } else {
            after.to_string()
        };
        if after > 0
            && let Ok(value) = text.parse()
        {
            response.headers_mut().insert("retry-after", value);
        }
        return (StatusCode::TOO_MANY_REQUESTS, response);
    }
    if state.faults.server_error.fires() {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (injected)",
        );
    }
    let fixed_score = state
        .faults
        .scores
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(assessment_id)
        .copied();
    let Some(score) = fixed_score.or_else(|| score_of(&assessment["rawData"])) else {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "rawData has neither itemsCorrect/itemsAttempted nor wordsRead/errors/seconds",
        );
    };
    let band = match score {
        s if s >= 85.0 => "ADVANCED",
        s if s >= 70.0 => "PROFICIENT",
        s if s >= 50.0 => "BASIC",
        _ => "BELOW_BASIC",
    };
    (
        StatusCode::OK,
        answer(
            StatusCode::OK,
            json!({
                "score": score,
                "band": band,
                "historyCount": history.len(),
                "model": "testkit-stand-in-1",
            }),
        ),
    )
}

/// 0..=100 with one decimal, from the raw data.
fn score_of(raw: &Value) -> Option<f64> {
    let number = |name: &str| raw[name].as_f64().filter(|v| v.is_finite() && *v >= 0.0);
    let share = if let (Some(correct), Some(attempted)) =
        (number("itemsCorrect"), number("itemsAttempted"))
    {
        (attempted > 0.0 && correct <= attempted).then(|| correct / attempted)?
    } else {
        let (read, errors, seconds) = (number("wordsRead")?, number("errors")?, number("seconds")?);
        // Words correct per minute against a 150 wcpm ceiling.
        (seconds > 0.0 && errors <= read)
            .then(|| ((read - errors) * 60.0 / seconds / 150.0).min(1.0))?
    };
    Some((share * 1000.0).round() / 10.0)
}

async fn stats(State(state): State<Arc<StandInState>>) -> axum::Json<ScoringStats> {
    axum::Json(state.stats())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_come_from_the_raw_data() {
        assert_eq!(
            score_of(&json!({"itemsCorrect": 17, "itemsAttempted": 20})),
            Some(85.0)
        );
        assert_eq!(
            score_of(&json!({"wordsRead": 80, "errors": 5, "seconds": 60})),
            Some(50.0)
        );
        assert_eq!(
            score_of(&json!({"wordsRead": 400, "errors": 0, "seconds": 60})),
            Some(100.0)
        );
        assert_eq!(
            score_of(&json!({"itemsCorrect": 21, "itemsAttempted": 20})),
            None
        );
        assert_eq!(score_of(&json!({"notes": "x"})), None);
    }
}
