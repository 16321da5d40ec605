//! The one definition of a stored result: its columns ([`COLUMNS`]), a record's values in that
//! order ([`values`]: what the writer's insert binds and what a CSV row prints), and how a row is
//! read back ([`decode`]). Every query of results (history pages, exports, resuming, the
//! dashboard's digests), the insert, the CSV header and its rows are built from these, so a new
//! field of a result is a line in each of the three (plus a migration in `schema.rs` and the
//! field in `report::ResultRecord`).
//!
//! It never decides which rows: that is the queries' job (`queries.rs`, `Store::load`).

use super::queries::StoredResult;
use crate::coordinator::RunId;
use crate::report::ResultRecord;
use crate::wire::Dec;
use rusqlite::types::{Type, Value};
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

/// A record's values, in the order of [`COLUMNS`], as SQLite stores them (sums as decimal
/// text: they exceed 64 bits).
pub fn values(r: &ResultRecord) -> [Value; COLUMNS.len()] {
    [
        Value::Integer(r.id.0 as i64),
        Value::Integer(r.a.0 as i64),
        Value::Integer(r.b.0 as i64),
        Value::Text(r.worker.clone()),
        Value::Text(r.peer.clone()),
        Value::Text(r.even_sum.0.to_string()),
        Value::Text(r.odd_sum.0.to_string()),
        Value::Real(r.pi),
        Value::Real(r.duration_s),
        Value::Text(r.timestamp.clone()),
    ]
}

/// Inserts one result of `run` with a statement prepared from [`insert_sql`]; how many rows it
/// inserted (0: the interval was stored already).
pub fn insert(
    stmt: &mut rusqlite::CachedStatement<'_>,
    run: RunId,
    r: &ResultRecord,
) -> rusqlite::Result<usize> {
    let run = std::iter::once(Value::Integer(super::sql_run_id(run)?));
    stmt.execute(rusqlite::params_from_iter(run.chain(values(r))))
}

/// One CSV line of a record (RFC 4180 quoting for text; reals printed so that they read back
/// bit for bit).
pub fn csv_row(r: &ResultRecord, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let cells: Vec<String> = values(r)
        .into_iter()
        .map(|v| match v {
            Value::Integer(i) => i.to_string(),
            Value::Real(x) => format!("{x:?}"),
            Value::Text(s) => csv_text(&s),
            Value::Null | Value::Blob(_) => String::new(),
        })
        .collect();
    writeln!(out, "{}", cells.join(","))
}

fn csv_text(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
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
        let mut line = Vec::new();
        csv_row(&record, &mut line).unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "1,1000,1999,w,p,2,3,0.5,0.25,t\n"
        );
    }

    /// What [`insert`] writes, [`decode`] reads back, field for field.
    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE results (seq INTEGER PRIMARY KEY, run_id INTEGER, interval_id INTEGER,
             a INTEGER, b INTEGER, worker TEXT, peer TEXT, even_sum TEXT, odd_sum TEXT, pi REAL,
             duration_s REAL, timestamp TEXT, UNIQUE (run_id, interval_id))",
        )
        .unwrap();
        let record = ResultRecord {
            id: Dec(7),
            a: Dec(7000),
            b: Dec(7999),
            worker: "a, \"b\"".into(),
            peer: "[::1]:5".into(),
            even_sum: Dec(u128::MAX),
            odd_sum: Dec(1 << 100),
            pi: 1.2345678901234567e-7,
            duration_s: 0.001,
            timestamp: "2026-12-02T08:52:06.123Z".into(),
        };
        let mut stmt = conn.prepare_cached(&insert_sql()).unwrap();
        assert_eq!(insert(&mut stmt, RunId(3), &record).unwrap(), 1);
        assert_eq!(insert(&mut stmt, RunId(3), &record).unwrap(), 0, "once");
        let sql = format!("SELECT {} FROM results", select_list());
        let back = conn.query_row(&sql, [], decode).unwrap();
        assert_eq!(back.record, record);
        let mut line = Vec::new();
        csv_row(&record, &mut line).unwrap();
        assert!(String::from_utf8(line)
            .unwrap()
            .contains(",\"a, \"\"b\"\"\","));
    }
}
