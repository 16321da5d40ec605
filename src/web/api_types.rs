//! The API's own types for what the coordinator reports, and the API's schemas of the report's
//! file formats. The coordinator derives no serialisation and no schema: its views are mapped
//! here, field for field, into the JSON the API returns (and the OpenAPI document describes).
//! The report's records (`results.json`'s rows, `final.json`) are served as they are written, so
//! they are not mapped: their OpenAPI schemas are written here instead (`report` knows nothing of
//! HTTP), and the tests below hold each schema to the fields its type serialises.

use crate::coordinator;
use crate::report::{FinalReport, ResultRecord};
use serde::Serialize;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

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

/// One property of a report's schema: required, unless it may be null.
struct Field {
    name: &'static str,
    schema: ObjectBuilder,
    description: Option<&'static str>,
    required: bool,
}

impl Field {
    fn new(name: &'static str, schema: ObjectBuilder) -> Field {
        Field {
            name,
            schema,
            description: None,
            required: true,
        }
    }

    /// A number or null (an `Option<f64>`), never required.
    fn number_or_null(name: &'static str) -> Field {
        Field {
            required: false,
            ..Field::new(
                name,
                double().schema_type(SchemaType::from_iter([Type::Number, Type::Null])),
            )
        }
    }

    fn about(self, description: &'static str) -> Field {
        Field {
            description: Some(description),
            ..self
        }
    }
}

/// A big integer as a decimal string (docs/api.md, "Conventions").
fn decimal() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[0-9]+$"))
}

fn text() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn double() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
}

fn unsigned(format: KnownFormat) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(format)))
        .minimum(Some(0))
}

/// An object of `fields`.
fn object(description: &str, fields: Vec<Field>) -> RefOr<Schema> {
    let mut object = ObjectBuilder::new().description(Some(description));
    for f in fields {
        if f.required {
            object = object.required(f.name);
        }
        object = object.property(f.name, f.schema.description(f.description));
    }
    RefOr::T(Schema::Object(object.build()))
}

impl PartialSchema for ResultRecord {
    fn schema() -> RefOr<Schema> {
        object(
            "One accepted result.",
            vec![
                Field::new("id", decimal()),
                Field::new("a", decimal()),
                Field::new("b", decimal()),
                Field::new("worker", text()),
                Field::new("peer", text()),
                Field::new("even_sum", decimal()),
                Field::new("odd_sum", decimal()),
                Field::new("pi", double()),
                Field::new("duration_s", double()),
                Field::new("timestamp", text())
                    .about("ISO-8601 (RFC 3339, UTC) time of acceptance."),
            ],
        )
    }
}

impl ToSchema for ResultRecord {}

impl PartialSchema for FinalReport {
    fn schema() -> RefOr<Schema> {
        object(
            "The summary of a run: `final.json`, `run --json`, `GET /api/runs/{id}/final`.",
            vec![
                Field::new("terms", unsigned(KnownFormat::Int64)).about(
                    "Terms of the job (bounded), or terms covered by accepted results (open-ended).",
                ),
                Field::new("chunk", unsigned(KnownFormat::Int64)),
                Field::new("intervals", unsigned(KnownFormat::Int64)).about("Accepted intervals."),
                Field::new("even_sum", decimal()),
                Field::new("odd_sum", decimal()),
                Field::new("pi", double())
                    .about("The aggregated π partials, summed exactly and rounded once."),
                Field::new("pi_error", double()).about("`|pi − π|`."),
                Field::new("pi_bound", double()).about(
                    "A rigorous bound on `|pi − exact partial sum of the accepted intervals|`, \
                     whichever clients computed them (each result's distance to the O(1) \
                     reference plus the reference's error, summed, plus the final rounding).",
                ),
                Field::new("correct_digits", unsigned(KnownFormat::Int32)).about(
                    "Decimal places of π that every value within `pi_bound` of `pi` gets right: \
                     the largest `d` with `pi_error + pi_bound ≤ ½·10⁻ᵈ`.",
                ),
                Field::number_or_null("pi_corrected").about(
                    "`pi` plus the Euler-number estimate of the series' remainder, when the \
                     accepted intervals form a contiguous prefix `[0, terms − 1]`; otherwise null.",
                ),
                Field::new("workers", unsigned(KnownFormat::Int64)).about(
                    "Workers that contributed: distinct worker names with at least one accepted \
                     result.",
                ),
                Field::new("elapsed_s", double()),
                Field::new("terms_per_s", double()),
                Field::new("kernel", text()).about(
                    "The π kernel the run computes with (`\"oct\"`, or `\"quad\"` for runs made \
                     before it): the bits of `pi` are promised per job and kernel.",
                ),
            ],
        )
    }
}

impl ToSchema for FinalReport {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Dec;
    use std::collections::BTreeSet;

    /// The schema's properties and required fields, and the keys `value` serialises to with the
    /// ones that are null.
    fn compare(schema: RefOr<Schema>, value: serde_json::Value) {
        let schema = serde_json::to_value(schema).unwrap();
        let properties: BTreeSet<_> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let value = value.as_object().unwrap();
        let keys: BTreeSet<_> = value.keys().cloned().collect();
        assert_eq!(
            properties, keys,
            "the schema names every field, and only them"
        );
        let required: BTreeSet<_> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect();
        let never_null: BTreeSet<_> = value
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(
            required, never_null,
            "the fields that may be null are optional"
        );
    }

    #[test]
    fn the_reports_schemas_name_the_fields_they_serialise() {
        let record = ResultRecord {
            id: Dec(1),
            a: Dec(1000),
            b: Dec(1999),
            worker: "w".into(),
            peer: "127.0.0.1:1".into(),
            even_sum: Dec(2),
            odd_sum: Dec(3),
            pi: 0.5,
            duration_s: 0.1,
            timestamp: "2026-01-01T00:00:00Z".into(),
        };
        compare(
            ResultRecord::schema(),
            serde_json::to_value(record).unwrap(),
        );
        let job = crate::job::Job::new(Some(2000), Some(1000)).unwrap();
        let report = FinalReport::new(
            &job,
            crate::maths::kernel::Kernel::CURRENT,
            &crate::report::Totals::default(),
            false,
        );
        assert!(report.pi_corrected.is_none());
        compare(FinalReport::schema(), serde_json::to_value(report).unwrap());
    }
}
