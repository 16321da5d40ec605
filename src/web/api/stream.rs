//! `GET /api/events`: the live stream of Server-Sent Events (docs/api.md says how a client
//! loses no result).

use super::history::ResultRow;
use super::status::{status_value, Status};
use crate::coordinator::RunId;
use crate::store::{HistoryPosition, HistoryQuery, HistorySort};
use crate::web::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::StreamExt;
use serde::Serialize;
use std::convert::Infallible;
use std::time::Duration;
use utoipa::ToSchema;

/// How often the live stream sends an update, at most.
const UPDATE_EVERY: Duration = Duration::from_millis(250);
/// The most results one live update carries (the newest ones).
const RESULTS_PER_UPDATE: usize = 100;

/// One `update` event of `GET /api/events`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LiveUpdate {
    pub status: Status,
    /// The run the history positions below belong to (the current run).
    pub run: u64,
    /// The history position (`seq`) the previous update of this stream reached; null in the
    /// first update of a stream (or after the current run changed).
    pub after: Option<i64>,
    /// The newest history position of the run now (0: no results yet). The event's `id` is
    /// `run:head`; a reconnecting browser sends it back as `Last-Event-ID`.
    pub head: i64,
    /// Results with `after < seq ≤ head`, newest first, at most 100.
    pub results: Vec<ResultRow>,
    /// Some results in (after, head] were left out: fetch them from the history
    /// (`GET /api/runs/{run}/results?sort=arrival&order=asc&cursor=after`).
    pub more: bool,
}

/// Parses a `Last-Event-ID` of the form `run:seq`.
fn last_event_id(headers: &HeaderMap) -> Option<(RunId, i64)> {
    let v = headers.get("last-event-id")?.to_str().ok()?;
    let (run, seq) = v.split_once(':')?;
    Some((RunId(run.parse().ok()?), seq.parse().ok()?))
}

#[utoipa::path(get, path = "/api/events", tag = "status",
    responses((status = 200,
        description = "Server-Sent Events: at most four `update` events a second, whose data is a LiveUpdate (#/components/schemas/LiveUpdate)",
        content_type = "text/event-stream", body = String)))]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    struct Stream {
        state: AppState,
        tick: tokio::time::Interval,
        run: RunId,
        /// The history position the stream has reported.
        head: Option<i64>,
        started: bool,
        /// Whether a tick with nothing new is worth an update.
        quiet: crate::web::live::QuietGate,
    }
    let mut tick = tokio::time::interval(UPDATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let resume = last_event_id(&headers);
    let stop = state.stop.clone();
    let start = Stream {
        run: resume.map_or(RunId(0), |r| r.0),
        head: resume.map(|r| r.1),
        started: resume.is_some(),
        state,
        tick,
        quiet: Default::default(),
    };
    let stream = futures_util::stream::unfold(start, |mut s| async move {
        loop {
            s.tick.tick().await;
            let status = status_value(&s.state).await;
            let run = RunId(status.run.id);
            if run != s.run || !s.started {
                s.run = run;
                s.head = None;
                s.started = false;
            }
            let reads = s.state.node.reads();
            // Positions start at 1: 0 stands for "before any result".
            let head = match reads.with(move |st| st.last_seq(run)).await {
                Ok(h) => h.unwrap_or(0),
                Err(_) => s.head.unwrap_or(0),
            };
            let after = s.head.filter(|_| s.started);
            let mut results = Vec::new();
            let mut more = false;
            if let Some(from) = after {
                if head > from {
                    let page = reads
                        .with(move |st| {
                            st.history_page(&HistoryQuery {
                                run,
                                sort: HistorySort::Arrival,
                                descending: true,
                                worker: None,
                                position: HistoryPosition::From(head),
                                limit: RESULTS_PER_UPDATE + 1,
                            })
                        })
                        .await;
                    match page {
                        Ok(page) => {
                            results = page
                                .rows
                                .into_iter()
                                .filter(|r| r.seq > from)
                                .map(ResultRow::from)
                                .collect();
                            more = results.len() > RESULTS_PER_UPDATE;
                            results.truncate(RESULTS_PER_UPDATE);
                        }
                        // The page fetches what it missed from the history.
                        Err(_) => more = true,
                    }
                }
            }
            // Nothing new but the clocks: at most one update a second (web::live).
            let news = !results.is_empty() || more || after != Some(head);
            let json = serde_json::to_value(&status).unwrap_or(serde_json::Value::Null);
            if !s.quiet.admit(news, json, tokio::time::Instant::now()) {
                continue;
            }
            let update = LiveUpdate {
                status,
                run: run.0,
                after,
                head,
                results,
                more,
            };
            s.started = true;
            s.head = Some(head);
            let event = SseEvent::default()
                .event("update")
                .id(format!("{run}:{head}"));
            let event = match serde_json::to_string(&update) {
                Ok(data) => event.data(data),
                Err(e) => {
                    tracing::error!("cannot encode a live update: {e}");
                    event.data("{}")
                }
            };
            return Some((Ok(event), s));
        }
    });
    // The stream ends when the dashboard stops, so that its graceful shutdown can complete.
    let stream = stream.take_until(stop.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}
