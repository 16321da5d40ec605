//! `GET /api/workers`: the worker table, one row per connected session of the current run.

use super::{query, rfc3339, ApiResult, Order};
use crate::coordinator::WorkerKind;
use crate::web::{AppState, ErrorBody};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The most rows one page of the worker table holds.
const MAX_WORKERS_PAGE: usize = 500;

/// What kind of client a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `piswarm worker`.
    Piswarm,
    /// The original's Python client, on the legacy listener.
    Legacy,
    /// A browser.
    Browser,
    /// Any other client of protocol v1.
    Other,
}

impl From<WorkerKind> for Kind {
    fn from(k: WorkerKind) -> Kind {
        match k {
            WorkerKind::Piswarm => Kind::Piswarm,
            WorkerKind::Legacy => Kind::Legacy,
            WorkerKind::Browser => Kind::Browser,
            WorkerKind::Other => Kind::Other,
        }
    }
}

/// One connected session.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerInfo {
    pub session: u64,
    pub name: String,
    pub kind: Kind,
    /// What the client says it is: the browser's short name (`Chrome 131 · Android`) for a
    /// `/join` page, `piswarm/VERSION` for `piswarm worker`; empty when it said nothing.
    pub agent: String,
    /// Its address.
    pub peer: String,
    /// RFC 3339 (UTC) time it connected.
    pub connected_at: String,
    pub accepted: u64,
    pub rejected: u64,
    /// Intervals assigned to it and not answered yet.
    pub in_hand: usize,
    pub strikes: u32,
    /// Terms per second of its accepted results since it connected.
    pub terms_per_s: f64,
    /// The most intervals it may hold now: before its first result a small share of the job,
    /// then what it is expected to finish within the horizon (its measured speed), plus one.
    pub allowance: usize,
    /// Backup copies it was handed (intervals another session held too), and how many of them
    /// counted first.
    pub backups: u64,
    pub backups_won: u64,
    /// RFC 3339 (UTC) time it was last heard from.
    pub last_seen_at: String,
}

/// How the worker table is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkerSort {
    /// Fastest first (the default).
    #[default]
    Rate,
    Name,
    Kind,
    Peer,
    Connected,
    Accepted,
    Rejected,
    InHand,
    Strikes,
    LastSeen,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkersQuery {
    /// The column: `rate` (default), `name`, `kind`, `peer`, `connected`, `accepted`,
    /// `rejected`, `in_hand`, `strikes`, `last_seen`.
    sort: Option<WorkerSort>,
    /// `desc` (the default for rate and the counts) or `asc`.
    order: Option<Order>,
    /// Rows skipped.
    offset: Option<usize>,
    /// Rows per page: default 100, at most 500.
    limit: Option<usize>,
}

/// A page of the worker table.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkersPage {
    pub workers: Vec<WorkerInfo>,
    /// Connected sessions in all.
    pub total: usize,
    pub offset: usize,
}

#[utoipa::path(get, path = "/api/workers", tag = "workers", params(WorkersQuery),
    responses(
        (status = 200, description = "One row per connected session of the current run", body = WorkersPage),
        (status = 400, description = "A malformed query", body = ErrorBody)))]
pub async fn workers(
    State(state): State<AppState>,
    q: Result<Query<WorkersQuery>, QueryRejection>,
) -> ApiResult<Json<WorkersPage>> {
    let q = query(q)?;
    let sort = q.sort.unwrap_or_default();
    let order = q.order.unwrap_or(match sort {
        WorkerSort::Name | WorkerSort::Kind | WorkerSort::Peer | WorkerSort::Connected => {
            Order::Asc
        }
        _ => Order::Desc,
    });
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_WORKERS_PAGE);
    let run = state.node.current_run();
    let mut rows = match state.node.coordinator() {
        Some(c) => c.workers().await.unwrap_or_default(),
        None => Vec::new(),
    };
    rows.sort_by(|a, b| {
        let by = match sort {
            WorkerSort::Rate => a.terms_per_s.total_cmp(&b.terms_per_s),
            WorkerSort::Name => a.name.cmp(&b.name),
            WorkerSort::Kind => (a.kind as u8).cmp(&(b.kind as u8)),
            WorkerSort::Peer => a.peer.cmp(&b.peer),
            WorkerSort::Connected => a.joined_s.total_cmp(&b.joined_s),
            WorkerSort::Accepted => a.accepted.cmp(&b.accepted),
            WorkerSort::Rejected => a.rejected.cmp(&b.rejected),
            WorkerSort::InHand => a.in_hand.cmp(&b.in_hand),
            WorkerSort::Strikes => a.strikes.cmp(&b.strikes),
            WorkerSort::LastSeen => a.last_seen_s.total_cmp(&b.last_seen_s),
        };
        let by = if order == Order::Desc {
            by.reverse()
        } else {
            by
        };
        by.then_with(|| a.session.cmp(&b.session))
    });
    let total = rows.len();
    let workers = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|w| WorkerInfo {
            session: w.session,
            name: w.name,
            kind: w.kind.into(),
            agent: w.agent,
            peer: w.peer,
            connected_at: rfc3339(run.started, w.joined_s),
            accepted: w.accepted,
            rejected: w.rejected,
            in_hand: w.in_hand,
            strikes: w.strikes,
            terms_per_s: w.terms_per_s,
            allowance: w.allowance,
            backups: w.backups,
            backups_won: w.backups_won,
            last_seen_at: rfc3339(run.started, w.last_seen_s),
        })
        .collect();
    Ok(Json(WorkersPage {
        workers,
        total,
        offset,
    }))
}
