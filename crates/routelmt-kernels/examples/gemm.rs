//! GEMM throughput of the CPU kernels on the Qwen3-0.6B projection shapes (random values).
//!
//! `cargo run --release -p routelmt-kernels --example gemm -- [ROWS ...]` (default: 64 1024).
//! Prints, per shape and weight format, the median of 7 runs in ms and GFLOP/s. Compare with
//! `torch.matmul` on the same shapes (scripts/bench_torch_gemm.py).
use routelmt_kernels::{Isa, PackFormat, PackedMatrix, matmul, threads};
use std::time::Instant;

fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect()
}

fn main() {
    let rows: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("ROWS")).collect();
    let rows = if rows.is_empty() { vec![64, 1024] } else { rows };
    let isa = Isa::detect();
    // (name, k, n): fused q/k/v, o, fused gate/up, down.
    let shapes =
        [("qkv", 1024, 4096), ("o", 2048, 1024), ("gate_up", 1024, 6144), ("down", 3072, 1024)];
    println!("kernels {} with {} threads", isa.name(), threads());
    for &m in &rows {
        for format in [PackFormat::F32, PackFormat::Q8] {
            let (mut flops, mut secs) = (0.0, 0.0);
            for (name, k, n) in shapes {
                let w = PackedMatrix::pack(&values(k * n, 1), k, n, format);
                let a = values(m * k, 2);
                let mut out = vec![0f32; m * n];
                matmul(isa, &a, m, &w, None, &mut out);
                let mut times: Vec<f64> = (0..7)
                    .map(|_| {
                        let t = Instant::now();
                        matmul(isa, &a, m, &w, None, &mut out);
                        t.elapsed().as_secs_f64()
                    })
                    .collect();
                times.sort_by(f64::total_cmp);
                let f = 2.0 * (m * k * n) as f64;
                println!(
                    "{format:>4} m {m:>5} {name:>8} [{k} x {n}]: {:>8.2} ms {:>6.1} GFLOP/s",
                    times[3] * 1e3,
                    f / times[3] / 1e9
                );
                flops += f;
                secs += times[3];
            }
            println!("{format:>4} m {m:>5}      all: {:>6.1} GFLOP/s", flops / secs / 1e9);
        }
    }
}
