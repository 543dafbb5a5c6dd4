//! Kernel tests against independent references: the GEMM against a float64 product on ragged
//! shapes for every ISA this CPU runs, f16/q8 rounding, int8 rounding, q8 requantization.

use half::f16;

use crate::int8::round_small;
use crate::{Isa, PackFormat, PackedMatrix, matmul};

fn reference(a: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0f64; m * n];
    for i in 0..m {
        for kk in 0..k {
            for j in 0..n {
                c[i * n + j] += a[i * k + kk] as f64 * w[kk * n + j] as f64;
            }
        }
    }
    c.into_iter().map(|v| v as f32).collect()
}

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5)
        .collect()
}

#[test]
fn every_kernel_matches_a_float64_reference_on_ragged_shapes() {
    let isas = [Isa::detect(), Isa::Avx2, Isa::Portable];
    for &(m, k, n) in
        &[(1, 1, 1), (7, 33, 45), (13, 300, 70), (64, 513, 96), (9, 64, 32), (301, 70, 40)]
    {
        let (a, w) = (values(m * k, 1), values(k * n, 2));
        let want = reference(&a, &w, m, k, n);
        let bias = values(n, 3);
        for isa in isas {
            if !isa.supported() {
                continue;
            }
            let packed = PackedMatrix::pack(&w, k, n, PackFormat::F32);
            assert_eq!(packed.unpack(), w);
            let mut c = vec![f32::NAN; m * n];
            matmul(isa, &a, m, &packed, Some(&bias), &mut c);
            for (i, (got, want)) in c.iter().zip(&want).enumerate() {
                let want = want + bias[i % n];
                assert!(
                    (got - want).abs() <= 1e-5 * (k as f32).sqrt(),
                    "{isa:?} {m}x{k}x{n} at {i}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn f16_and_q8_weights_compute_with_their_rounded_values() {
    for m in [5, 300] {
        let (k, n) = (100, 40);
        let (a, w) = (values(m * k, 4), values(k * n, 5));
        for format in [PackFormat::F16, PackFormat::Q8] {
            let packed = PackedMatrix::pack(&w, k, n, format);
            let rounded = packed.unpack();
            let max_err = w.iter().zip(&rounded).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            let bound = if format == PackFormat::F16 { 2.5e-4 } else { 0.5 / 127.0 * 0.5 + 1e-7 };
            assert!(max_err > 0.0 && max_err <= bound, "{format}: rounding error {max_err}");
            let want = reference(&a, &rounded, m, k, n);
            for isa in [Isa::detect(), Isa::Portable] {
                let mut c = vec![0f32; m * n];
                matmul(isa, &a, m, &packed, None, &mut c);
                // The int8 kernel also rounds the activations to int8 per block of 32.
                let int8 = isa.int8() && format == PackFormat::Q8;
                let scale = want.iter().fold(0f32, |s, v| s.max(v.abs()));
                let tol = if int8 { 1e-2 * scale } else { 1e-4 };
                let worst = c.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
                assert!(worst <= tol, "{format} {isa:?}: max error {worst:e} > {tol:e}");
            }
        }
    }
    let (k, n) = (128, 64);
    let q = PackedMatrix::pack(&values(k * n, 7), k, n, PackFormat::Q8);
    assert_eq!(q.bytes() * 32, k * n * 36, "32 int8 and one f32 scale per 32 weights");
}

#[test]
fn round_small_is_round_ties_even() {
    let mut xs: Vec<f32> = (-1300..=1300).map(|i| i as f32 * 0.1).collect();
    xs.extend((-300..=300).map(|i| i as f32 + 0.5)); // every tie in the int8 range
    xs.extend([0.49999997, -0.49999997, 126.99999, -127.0, 4194304.0, -4194303.5]);
    for x in xs {
        assert_eq!(round_small(x), x.round_ties_even(), "{x}");
    }
}

#[test]
fn q8_requantization_of_q8_values_is_lossless() {
    // GGUF Q8_0 weights arrive dequantized (q · d); packing them again as q8 must give back
    // exactly the same values.
    let (k, n) = (64, 32);
    let w = values(k * n, 6);
    let once = PackedMatrix::pack(&w, k, n, PackFormat::Q8).unpack();
    let twice = PackedMatrix::pack(&once, k, n, PackFormat::Q8).unpack();
    assert_eq!(once, twice);
    // GGUF's own Q8_0: f16 scales `d`, int8 `q` with ±127 in every block (llama.cpp sets
    // d = amax / 127), stored along the input dimension: `w[kk, c] = q · d[block, c]`.
    let gguf: Vec<f32> = (0..k * n)
        .map(|i| {
            let (kk, c) = (i / n, i % n);
            let d = f16::from_f32(0.001 + 0.0137 * ((c * 7 + kk / 32) % 11) as f32).to_f32();
            let q = if kk % 32 == c % 32 { 127 } else { ((i * 37) % 255) as i32 - 127 };
            q as f32 * d
        })
        .collect();
    assert_eq!(PackedMatrix::pack(&gguf, k, n, PackFormat::Q8).unpack(), gguf);
}

/// llama.cpp's `quantize_row_q4_0_ref` and `quantize_row_q4_1_ref` for one block, written
/// from their definitions (f32 scale for the rounding, f16 scale and minimum stored), returned
/// dequantized.
fn q4_0_block(x: &[f32]) -> Vec<f32> {
    let max = x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = max / -8.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    let d16 = f16::from_f32(d).to_f32();
    x.iter().map(|&v| (((v * id + 8.5) as i32).min(15) - 8) as f32 * d16).collect()
}

fn q4_1_block(x: &[f32]) -> Vec<f32> {
    let min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let d = (max - min) / 15.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    let (d16, m16) = (f16::from_f32(d).to_f32(), f16::from_f32(min).to_f32());
    x.iter().map(|&v| (((v - min) * id + 0.5) as i32).min(15) as f32 * d16 + m16).collect()
}

fn squared_error(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum()
}

/// `w`'s column blocks of 32 steps of K, each as `block` returns it.
fn by_blocks(w: &[f32], k: usize, n: usize, block: impl Fn(&[f32]) -> Vec<f32>) -> Vec<f32> {
    let mut out = vec![0f32; k * n];
    for c in 0..n {
        for k0 in (0..k).step_by(32) {
            let col: Vec<f32> = (k0..(k0 + 32).min(k)).map(|kk| w[kk * n + c]).collect();
            for (i, v) in block(&col).into_iter().enumerate() {
                out[(k0 + i) * n + c] = v;
            }
        }
    }
    out
}

#[test]
fn q4_weights_round_as_the_closer_of_gguf_q4_0_and_q4_1_and_compute_with_their_values() {
    let (k, n) = (100, 70);
    let w = values(k * n, 8);
    let packed = PackedMatrix::pack(&w, k, n, PackFormat::Q4);
    assert_eq!(packed.format(), PackFormat::Q4);
    let got = packed.unpack();
    // Block by block, the closer of llama.cpp's two roundings.
    let (q4_0, q4_1) = (by_blocks(&w, k, n, q4_0_block), by_blocks(&w, k, n, q4_1_block));
    let (mut zeros, mut ones) = (0, 0);
    for c in 0..n {
        for k0 in (0..k).step_by(32) {
            let at: Vec<usize> = (k0..(k0 + 32).min(k)).map(|kk| kk * n + c).collect();
            let pick = |v: &[f32]| at.iter().map(|&i| v[i]).collect::<Vec<f32>>();
            let (g, a, b) = (pick(&got), pick(&q4_0), pick(&q4_1));
            let (ea, eb) = (squared_error(&a, &pick(&w)), squared_error(&b, &pick(&w)));
            if eb < ea {
                assert_eq!(g, b, "column {c} block {k0}: Q4_1's rounding");
                ones += 1;
            } else {
                assert_eq!(g, a, "column {c} block {k0}: Q4_0's rounding");
                zeros += 1;
            }
        }
    }
    assert!(zeros > 0 && ones > 0, "both roundings chosen somewhere: {zeros} {ones}");
    // 3 panels × 4 blocks of 32 × 32 weights: 4 bits each, an f16 scale and minimum per column.
    assert_eq!(packed.bytes(), 3 * 4 * (32 * 32 / 2 + 32 * 2 * 2));
    for m in [1, 5, 300] {
        let a = values(m * k, 9);
        let exact = reference(&a, &got, m, k, n);
        let scale = exact.iter().fold(0f32, |s, v| s.max(v.abs()));
        for isa in [Isa::detect(), Isa::Avx2, Isa::Portable] {
            if !isa.supported() {
                continue;
            }
            let mut c = vec![0f32; m * n];
            matmul(isa, &a, m, &packed, None, &mut c);
            let tol = if isa.int8() { 1e-2 * scale } else { 1e-4 };
            let worst = c.iter().zip(&exact).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
            assert!(worst <= tol, "q4 {isa:?} m={m}: max error {worst:e} > {tol:e}");
        }
    }
}

#[test]
fn q4_requantization_of_gguf_q4_0_and_q4_1_values_is_lossless() {
    // GGUF Q4_0 / Q4_1 weights arrive dequantized; packing them as q4 must give back exactly
    // the same values. Q4_0: `(q - 8) · d`, f16 d, the block's extreme at q = 0. Q4_1:
    // `q · d + m`, f16 d and m, q = 0 and q = 15 in every block (llama.cpp's rounding puts the
    // minimum and maximum there).
    let (k, n) = (96, 40);
    let file = |q4_1: bool| -> Vec<f32> {
        (0..k * n)
            .map(|i| {
                let (kk, c) = (i / n, i % n);
                let sign = if (c + kk / 32) % 3 == 0 { -1.0 } else { 1.0 };
                let d = f16::from_f32(sign * (0.002 + 0.0113 * ((c * 5 + kk / 32) % 13) as f32));
                let mut q = ((i * 29) % 16) as i32;
                if kk % 32 == (c * 3) % 32 {
                    q = 0;
                }
                if q4_1 && kk % 32 == (c * 3 + 1) % 32 {
                    q = 15;
                }
                if q4_1 {
                    let m = f16::from_f32(-0.05 + 0.007 * ((c + kk / 32) % 17) as f32);
                    q as f32 * d.to_f32().abs() + m.to_f32()
                } else {
                    (q - 8) as f32 * d.to_f32()
                }
            })
            .collect()
    };
    for q4_1 in [false, true] {
        let w = file(q4_1);
        let packed = PackedMatrix::pack(&w, k, n, PackFormat::Q4);
        assert_eq!(packed.unpack(), w, "Q4_{}", u8::from(q4_1));
        assert_eq!(PackedMatrix::pack(&packed.unpack(), k, n, PackFormat::Q4).unpack(), w);
    }
}
