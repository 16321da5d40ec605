//! Criterion benchmarks of the wire codec (protocol v1, one JSON object per line): encoding and
//! decoding the `result` a worker sends for every interval, and decoding the `assign` it receives.
//!
//! Run with `cargo bench --bench codec`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use piswarm::maths::{kernel, sums};
use piswarm::wire::{self, ClientMessage, Dec, ServerMessage, WorkResult};
use std::hint::black_box;

fn sample_result() -> ClientMessage {
    let id = 123_456_789u64;
    let (a, b) = (id * 1000, id * 1000 + 999);
    ClientMessage::Result(WorkResult {
        id: Dec(id),
        a: Dec(a),
        b: Dec(b),
        even_sum: Dec(sums::even_sum(a, b)),
        odd_sum: Dec(sums::odd_sum(a, b)),
        pi: kernel::pi_partial(a, b).expect("a valid interval"),
        duration_s: 1.25e-6,
        resend: false,
    })
}

/// A line without its newline, as `connection::read_line` hands it to the decoder.
fn line_of<T: serde::Serialize>(message: &T) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode(message, &mut out);
    out.pop();
    out
}

fn codec(c: &mut Criterion) {
    let result = sample_result();
    let result_line = line_of(&result);
    let assign_line = line_of(&ServerMessage::Assign {
        id: Dec(123_456_789),
        a: Dec(123_456_789_000),
        b: Dec(123_456_789_999),
        lease_s: 60.0,
        backup: false,
    });
    assert_eq!(wire::decode_client(&result_line).unwrap(), result);
    assert!(matches!(
        wire::decode_server(&assign_line).unwrap(),
        ServerMessage::Assign { .. }
    ));

    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(512);
    group.bench_function("encode_result", |bench| {
        bench.iter(|| {
            out.clear();
            wire::encode(black_box(&result), &mut out);
            out.len()
        })
    });
    group.bench_function("decode_client_result", |bench| {
        bench.iter(|| wire::decode_client(black_box(&result_line)))
    });
    group.bench_function("decode_server_assign", |bench| {
        bench.iter(|| wire::decode_server(black_box(&assign_line)))
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
