//! The one definition of a stored result: its columns, how a row is read into a
//! [`StoredResult`], and how a [`ResultRecord`] is bound into an insert. Every query of results
//! (history pages, exports, resuming, the dashboard's digests), the writer's insert and the CSV
//! header are built from [`COLUMNS`], so a new field of a result is one line here (plus a
//! migration in `schema.rs` and the field in `report::ResultRecord`).
//!
//! It never decides which rows: that is the queries' job (`queries.rs`, `Store::load`).

use super::queries::StoredResult;
use crate::report::ResultRecord;
use crate::wire::Dec;
use rusqlite::types::{ToSql, Type};
use rusqlite::Row;

/// The columns of a result row after `seq`, each with its name in results.json and the CSV
/// header (the fields of [`ResultRecord`], in their order).
pub const COLUMNS: [(&str, &str); 10] = [
    ("interval_id", "id"),
    ("a", "a"),
    ("b", "b"),
    ("worker", "worker"),
    ("peer", "peer"),
    ("even_sum", "even_sum"),
    ("odd_sum", "odd_sum"),
    ("pi", "pi"),
    ("duration_s", "duration_s"),
    ("timestamp", "timestamp"),
];

/// `seq` and the columns, for a `SELECT`, in the order [`decode`] reads them.
pub fn select_list() -> String {
    let mut list = String::from("seq");
    for (column, _) in COLUMNS {
        list.push_str(", ");
        list.push_str(column);
    }
    list
}

/// The insert of one result of a run (`?1` the run, then the columns), ignoring an interval
/// already stored (exactly-once is the schema's `UNIQUE (run_id, interval_id)`).
pub fn insert_sql() -> String {
    let columns: Vec<&str> = COLUMNS.iter().map(|(c, _)| *c).collect();
    let values: Vec<String> = (2..=COLUMNS.len() + 1).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT OR IGNORE INTO results (run_id, {}) VALUES (?1, {})",
        columns.join(", "),
        values.join(", ")
    )
}

/// The CSV header: the fields' names.
pub fn csv_header() -> String {
    let fields: Vec<&str> = COLUMNS.iter().map(|(_, f)| *f).collect();
    fields.join(",")
}

/// Reads a row selected with [`select_list`]. A damaged sum is an error, never zero.
pub fn decode(r: &Row) -> rusqlite::Result<StoredResult> {
    Ok(StoredResult {
        seq: r.get(0)?,
        record: ResultRecord {
            id: Dec(r.get::<_, i64>(1)? as u64),
            a: Dec(r.get::<_, i64>(2)? as u64),
            b: Dec(r.get::<_, i64>(3)? as u64),
            worker: r.get(4)?,
            peer: r.get(5)?,
            even_sum: sum_column(r, 6)?,
            odd_sum: sum_column(r, 7)?,
            pi: r.get(8)?,
            duration_s: r.get(9)?,
            timestamp: r.get(10)?,
        },
    })
}

/// Inserts one result of `run` with a statement prepared from [`insert_sql`]; how many rows it
/// inserted (0: the interval was stored already).
pub fn insert(
    stmt: &mut rusqlite::CachedStatement<'_>,
    run: i64,
    r: &ResultRecord,
) -> rusqlite::Result<usize> {
    let (even_sum, odd_sum) = (r.even_sum.0.to_string(), r.odd_sum.0.to_string());
    let values: [&dyn ToSql; 11] = [
        &run,
        &(r.id.0 as i64),
        &(r.a.0 as i64),
        &(r.b.0 as i64),
        &r.worker,
        &r.peer,
        &even_sum,
        &odd_sum,
        &r.pi,
        &r.duration_s,
        &r.timestamp,
    ];
    stmt.execute(&values[..])
}

/// Reads a decimal sum column; a damaged value is an error, never zero.
pub(crate) fn sum_column(r: &Row, i: usize) -> rusqlite::Result<Dec<u128>> {
    let text: String = r.get(i)?;
    text.parse().map(Dec).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            Type::Text,
            format!("'{text}' is not a decimal sum").into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The columns name the fields of results.json in their order: the CSV header, the JSON
    /// objects and the rows agree.
    #[test]
    fn the_columns_are_the_fields_of_a_result_record() {
        let record = ResultRecord {
            id: Dec(1),
            a: Dec(1000),
            b: Dec(1999),
            worker: "w".into(),
            peer: "p".into(),
            even_sum: Dec(2),
            odd_sum: Dec(3),
            pi: 0.5,
            duration_s: 0.25,
            timestamp: "t".into(),
        };
        let json = serde_json::to_value(&record).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            csv_header(),
            "id,a,b,worker,peer,even_sum,odd_sum,pi,duration_s,timestamp"
        );
        let mut fields: Vec<&str> = COLUMNS.iter().map(|(_, f)| *f).collect();
        fields.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(fields, keys, "one column per field of ResultRecord");
        assert!(insert_sql().ends_with("?10, ?11)"), "{}", insert_sql());
        assert!(select_list().starts_with("seq, interval_id, a, b"));
    }
}
