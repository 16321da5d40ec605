//! The API's own types for what the coordinator reports. The coordinator derives no
//! serialisation and no schema: its views are mapped here, field for field, into the JSON the
//! API returns (and the OpenAPI document describes).

use crate::coordinator;
use serde::Serialize;
use utoipa::ToSchema;

/// The grid [0, span) cut into equal stretches of `width` intervals, with how many intervals of
/// each stretch are in each state. `span` is the job's interval count, or for an open-ended job
/// the highest interval handed out so far plus one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CoverageMap {
    pub span: u64,
    pub width: u64,
    pub chunk: u64,
    pub buckets: Vec<CoverageBucket>,
}

/// Interval counts of one stretch of the coverage map. `rejected` counts intervals whose last
/// result was rejected recently and that are not done yet (they are also in flight or given back).
/// Accepted results still being made durable count as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct CoverageBucket {
    pub done: u64,
    pub in_flight: u64,
    pub given_back: u64,
    pub rejected: u64,
    pub not_started: u64,
}

impl From<coordinator::CoverageMap> for CoverageMap {
    fn from(map: coordinator::CoverageMap) -> CoverageMap {
        CoverageMap {
            span: map.span,
            width: map.width,
            chunk: map.chunk,
            buckets: map.buckets.into_iter().map(CoverageBucket::from).collect(),
        }
    }
}

impl From<coordinator::CoverageBucket> for CoverageBucket {
    fn from(b: coordinator::CoverageBucket) -> CoverageBucket {
        CoverageBucket {
            done: b.done,
            in_flight: b.in_flight,
            given_back: b.given_back,
            rejected: b.rejected,
            not_started: b.not_started,
        }
    }
}
