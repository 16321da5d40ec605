//! What the page draws: a run's coverage map (`/api/runs/{id}/coverage`) and its plots
//! (`/api/runs/{id}/plots`: the error against terms, the throughput per worker).

use super::{query, resolve_run, ApiResult};
use crate::maths::series;
use crate::web::api_types::CoverageMap;
use crate::web::digest::RunDigest;
use crate::web::{AppState, ErrorBody};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CoverageQuery {
    /// At most this many stretches: default 200, at most 4096.
    buckets: Option<u32>,
}

#[utoipa::path(get, path = "/api/runs/{id}/coverage", tag = "runs",
    params(("id" = String, Path, description = "A run number, or `current`"), CoverageQuery),
    responses(
        (status = 200, description = "The coverage map of the job's grid", body = CoverageMap),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub async fn coverage(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<CoverageQuery>, QueryRejection>,
) -> ApiResult<Json<CoverageMap>> {
    let q = query(q)?;
    let buckets = q.buckets.unwrap_or(200).clamp(1, 4096);
    let run = resolve_run(&state, &id).await?;
    if run == state.node.current_run().id {
        if let Some(c) = state.node.coordinator() {
            if let Ok(map) = c.coverage(buckets).await {
                return Ok(Json(map.into()));
            }
        }
    }
    // A run that is not being served: only what the store knows (done or not started).
    let map = state
        .digests
        .with(run, move |d, row| d.coverage(row, buckets))
        .await?;
    Ok(Json(map.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlotsQuery {
    /// About this many points of the error plot: default 200, from 2 to 2000.
    points: Option<usize>,
}

/// The error of the estimate after some results.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorPoint {
    /// The terms those results cover (a decimal string, like every term count).
    #[schema(pattern = "^[0-9]+$")]
    pub done_terms: String,
    pub error: f64,
    /// The corrected estimate's error, where the results so far form a prefix.
    pub corrected_error: Option<f64>,
}

/// One worker name's throughput over the run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerThroughput {
    pub worker: String,
    pub results: u64,
    /// The terms of its accepted results (a decimal string, like every term count).
    #[schema(pattern = "^[0-9]+$")]
    pub done_terms: String,
    /// Sum of the durations it reported.
    pub seconds: f64,
    pub terms_per_s: f64,
}

/// Data for the plots.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Plots {
    pub error: Vec<ErrorPoint>,
    /// The fastest workers first, at most 50.
    pub workers: Vec<WorkerThroughput>,
    /// How many worker names the run has in all.
    pub workers_total: usize,
}

fn plots_of(d: &RunDigest, points: usize) -> Plots {
    let error = d
        .samples(points)
        .into_iter()
        .map(|p| ErrorPoint {
            done_terms: p.terms.to_string(),
            error: series::pi_error(p.pi),
            corrected_error: p
                .prefix
                .then(|| series::pi_error(series::pi_corrected(p.pi, p.terms))),
        })
        .collect();
    let mut workers: Vec<WorkerThroughput> = d
        .workers
        .iter()
        .map(|(name, s)| WorkerThroughput {
            worker: name.clone(),
            results: s.results,
            done_terms: s.terms.to_string(),
            seconds: s.seconds,
            terms_per_s: s.terms_per_s(),
        })
        .collect();
    workers.sort_by(|a, b| {
        b.terms_per_s
            .total_cmp(&a.terms_per_s)
            .then_with(|| a.worker.cmp(&b.worker))
    });
    let workers_total = workers.len();
    workers.truncate(50);
    Plots {
        error,
        workers,
        workers_total,
    }
}

#[utoipa::path(get, path = "/api/runs/{id}/plots", tag = "runs",
    params(("id" = String, Path, description = "A run number, or `current`"), PlotsQuery),
    responses(
        (status = 200, description = "The error against terms covered, and throughput per worker", body = Plots),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub async fn plots(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<PlotsQuery>, QueryRejection>,
) -> ApiResult<Json<Plots>> {
    let q = query(q)?;
    let points = q.points.unwrap_or(200).clamp(2, 2000);
    let run = resolve_run(&state, &id).await?;
    let plots = state
        .digests
        .with(run, move |d, _| plots_of(d, points))
        .await?;
    Ok(Json(plots))
}
