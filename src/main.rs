fn main() {
    use piswarm::maths::kernel::*;
    for isa in [Isa::Avx512, Isa::Avx2, Isa::Baseline] {
        let n: u64 = 2_000_000_000;
        let t = std::time::Instant::now();
        let p = pi_partial_with(isa, 0, n - 1);
        let dt = t.elapsed().as_secs_f64();
        println!("{isa:?} {p:.17} {:.3e} terms/s", n as f64 / dt);
    }
    println!("ref {:.17}", piswarm::maths::series::pi_partial_reference(0, 1_999_999_999));
}
