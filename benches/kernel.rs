//! Criterion benchmarks of the maths core: the π kernel on every instruction set this CPU has,
//! the exact even/odd sums, the O(1) reference series and the verification of a result.
//!
//! Run with `cargo bench --bench kernel`. `piswarm bench kernel` measures the same kernel on
//! every core for the figures in docs/performance.md; this is the single-threaded, statistical view.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use piswarm::job::Job;
use piswarm::maths::kernel::{self, Isa};
use piswarm::maths::{series, sums};
use piswarm::wire::{Dec, WorkResult};
use std::hint::black_box;
use std::time::Duration;

/// The instruction sets the running CPU supports, best first (`pi_partial_with` would silently
/// fall back to the baseline for the others, which would mislabel the measurement).
fn available_isas() -> Vec<Isa> {
    let best = Isa::detect();
    [Isa::Avx512, Isa::Avx2, Isa::Baseline]
        .into_iter()
        .filter(|&isa| {
            matches!(
                (best, isa),
                (_, Isa::Baseline) | (Isa::Avx512, _) | (Isa::Avx2, Isa::Avx2)
            )
        })
        .collect()
}

fn pi_partial(c: &mut Criterion) {
    let mut group = c.benchmark_group("pi_partial");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for terms in [1_000_000u64, 100_000_000] {
        group.throughput(Throughput::Elements(terms));
        // Start far from 0, as most intervals of a long run do (the cost does not depend on a).
        let a = 1u64 << 33;
        let b = a + terms - 1;
        for isa in available_isas() {
            group.bench_with_input(
                BenchmarkId::new(isa.name(), terms),
                &(a, b),
                |bench, &(a, b)| {
                    bench.iter(|| kernel::pi_partial_with(isa, black_box(a), black_box(b)))
                },
            );
        }
    }
    group.finish();
}

fn closed_forms(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed_forms");
    let (a, b) = (123_456_789_000u64, 123_456_789_999u64);
    group.bench_function("even_sum", |bench| {
        bench.iter(|| sums::even_sum(black_box(a), black_box(b)))
    });
    group.bench_function("odd_sum", |bench| {
        bench.iter(|| sums::odd_sum(black_box(a), black_box(b)))
    });
    // Near 0 the reference sums a few terms directly; far away it is the tail expansion alone.
    for (name, a, b) in [("reference_near_0", 0u64, 999u64), ("reference_far", a, b)] {
        group.bench_function(name, |bench| {
            bench.iter(|| series::pi_partial_reference(black_box(a), black_box(b)))
        });
    }
    group.finish();
}

fn verification(c: &mut Criterion) {
    // What the coordinator's sessions do for every result with the original's chunk of 1000.
    let job = Job::new(None, Some(1000)).expect("a valid job");
    let id = 123_456_789u64;
    let (a, b) = (id * 1000, id * 1000 + 999);
    let result = WorkResult {
        id: Dec(id),
        a: Dec(a),
        b: Dec(b),
        even_sum: Dec(sums::even_sum(a, b)),
        odd_sum: Dec(sums::odd_sum(a, b)),
        pi: kernel::pi_partial(a, b).expect("a valid interval"),
        duration_s: 0.0,
        resend: false,
    };
    assert!(piswarm::job::verify::check_result(&job, &result).is_ok());
    c.bench_function("verify/check_result_chunk_1000", |bench| {
        bench.iter(|| piswarm::job::verify::check_result(black_box(&job), black_box(&result)))
    });
}

criterion_group!(benches, pi_partial, closed_forms, verification);
criterion_main!(benches);
