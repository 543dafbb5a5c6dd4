//! Stored tensor types and their decoding to f32: the float types of safetensors and GGUF, and
//! GGUF's block quantizations as ggml defines them (`ggml-common.h` block structs, dequantized
//! as `ggml-quants.c` does; checked against the `gguf` Python package in the tests).
//!
//! | type | block | bytes | layout                                                       |
//! |------|-------|-------|--------------------------------------------------------------|
//! | Q8_0 | 32    | 34    | f16 d, 32 × i8 q: `d·q`                                      |
//! | Q4_0 | 32    | 18    | f16 d, 16 bytes: low nibbles = 0..16, high = 16..32: `d·(q−8)` |
//! | Q4_1 | 32    | 20    | f16 d, f16 m, 16 bytes as Q4_0: `d·q + m`                    |
//! | Q4_K | 256   | 144   | f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes q  |
//! | Q5_K | 256   | 176   | as Q4_K plus 32 bytes of fifth bits before the nibbles       |
//! | Q6_K | 256   | 210   | 128 bytes low 4 bits, 64 bytes high 2 bits, 16 × i8 scales, f16 d |

use half::{bf16, f16};

/// A stored element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum Stored {
    /// IEEE single.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// ggml Q8_0.
    Q8_0,
    /// ggml Q4_0.
    Q4_0,
    /// ggml Q4_1.
    Q4_1,
    /// ggml Q4_K.
    Q4_K,
    /// ggml Q5_K.
    Q5_K,
    /// ggml Q6_K.
    Q6_K,
}

/// ggml's type ids and names, for messages about types we do not decode.
const GGML_NAMES: [(u32, &str); 31] = [
    (0, "F32"),
    (1, "F16"),
    (2, "Q4_0"),
    (3, "Q4_1"),
    (4, "Q4_2"),
    (5, "Q4_3"),
    (6, "Q5_0"),
    (7, "Q5_1"),
    (8, "Q8_0"),
    (9, "Q8_1"),
    (10, "Q2_K"),
    (11, "Q3_K"),
    (12, "Q4_K"),
    (13, "Q5_K"),
    (14, "Q6_K"),
    (15, "Q8_K"),
    (16, "IQ2_XXS"),
    (17, "IQ2_XS"),
    (18, "IQ3_XXS"),
    (19, "IQ1_S"),
    (20, "IQ4_NL"),
    (21, "IQ3_S"),
    (22, "IQ2_S"),
    (23, "IQ4_XS"),
    (24, "I8"),
    (25, "I16"),
    (26, "I32"),
    (27, "I64"),
    (28, "F64"),
    (29, "IQ1_M"),
    (30, "BF16"),
];

impl Stored {
    /// Lower-case name (`f32`, `q4_k`, ...), as reports print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Q4_K => "q4_k",
            Self::Q5_K => "q5_k",
            Self::Q6_K => "q6_k",
        }
    }

    /// (elements, bytes) per block; float types are blocks of one element.
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q8_0 => (32, 34),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q4_K => (256, 144),
            Self::Q5_K => (256, 176),
            Self::Q6_K => (256, 210),
        }
    }

    /// Bytes of `n` elements; why not when `n` is not a whole number of blocks or the size
    /// does not fit a `usize` (a crafted shape).
    pub fn bytes_for(self, n: usize) -> Result<usize, String> {
        let (elems, bytes) = self.block();
        if !n.is_multiple_of(elems) {
            return Err(format!("{n} elements are not whole {} blocks", self.name()));
        }
        (n / elems)
            .checked_mul(bytes)
            .ok_or_else(|| format!("{n} {} elements are too many for this platform", self.name()))
    }

    /// The type of a safetensors dtype we decode.
    pub fn from_safetensors(d: safetensors::Dtype) -> Option<Self> {
        match d {
            safetensors::Dtype::F32 => Some(Self::F32),
            safetensors::Dtype::F16 => Some(Self::F16),
            safetensors::Dtype::BF16 => Some(Self::BF16),
            _ => None,
        }
    }

    /// The type of a ggml type id, or the id's ggml name (or number) when we do not decode it.
    pub fn from_ggml(id: u32) -> Result<Self, String> {
        Ok(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            12 => Self::Q4_K,
            13 => Self::Q5_K,
            14 => Self::Q6_K,
            30 => Self::BF16,
            other => {
                return Err(GGML_NAMES
                    .iter()
                    .find(|(i, _)| *i == other)
                    .map_or_else(|| format!("unknown type id {other}"), |(_, n)| n.to_string()));
            }
        })
    }
}

fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Decodes `n` elements of type `t` from `bytes` to f32. Errors when the byte count does not
/// match.
pub fn decode(t: Stored, bytes: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let want = t.bytes_for(n)?;
    if bytes.len() != want {
        return Err(format!(
            "{} bytes stored, {want} expected for {n} {} elements (truncated?)",
            bytes.len(),
            t.name()
        ));
    }
    let mut out = Vec::with_capacity(n);
    let (_, block_bytes) = t.block();
    match t {
        Stored::F32 => {
            out.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        }
        Stored::F16 => out.extend(bytes.chunks_exact(2).map(|c| half_at(c, 0))),
        Stored::BF16 => {
            out.extend(bytes.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()))
        }
        _ => {
            for b in bytes.chunks_exact(block_bytes) {
                match t {
                    Stored::Q8_0 => q8_0(b, &mut out),
                    Stored::Q4_0 => q4_0(b, &mut out),
                    Stored::Q4_1 => q4_1(b, &mut out),
                    Stored::Q4_K => q4_k(b, &mut out),
                    Stored::Q5_K => q5_k(b, &mut out),
                    _ => q6_k(b, &mut out),
                }
            }
        }
    }
    Ok(out)
}

fn q8_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half_at(b, 0);
    out.extend(b[2..34].iter().map(|&q| d * f32::from(q as i8)));
}

fn q4_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half_at(b, 0);
    let qs = &b[2..18];
    out.extend(qs.iter().map(|&q| d * (f32::from(q & 0xF) - 8.0)));
    out.extend(qs.iter().map(|&q| d * (f32::from(q >> 4) - 8.0)));
}

fn q4_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    let qs = &b[4..20];
    out.extend(qs.iter().map(|&q| d * f32::from(q & 0xF) + m));
    out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
}

/// The 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes of Q4_K / Q5_K.
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    };
    (f32::from(sc), f32::from(m))
}

fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (chunk, q) in qs.chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        out.extend(q.iter().map(|&x| d * sc1 * f32::from(x & 0xF) - dmin * m1));
        out.extend(q.iter().map(|&x| d * sc2 * f32::from(x >> 4) - dmin * m2));
    }
}

fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let ql = &b[48..176];
    for (chunk, q) in ql.chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        let high = |l: usize, u: u8| if qh[l] & u != 0 { 16.0 } else { 0.0 };
        out.extend(
            q.iter()
                .enumerate()
                .map(|(l, &x)| d * sc1 * (f32::from(x & 0xF) + high(l, u1)) - dmin * m1),
        );
        out.extend(
            q.iter()
                .enumerate()
                .map(|(l, &x)| d * sc2 * (f32::from(x >> 4) + high(l, u2)) - dmin * m2),
        );
    }
}

fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let (ql, qh, sc) = (&b[..128], &b[128..192], &b[192..208]);
    let d = half_at(b, 208);
    for half in 0..2 {
        let (ql, qh, sc) = (&ql[64 * half..], &qh[32 * half..], &sc[8 * half..]);
        let mut y = [0f32; 128];
        for l in 0..32 {
            let is = l / 16;
            let q = |low: u8, shift: u8| i32::from(low | (((qh[l] >> shift) & 3) << 4)) - 32;
            let q1 = q(ql[l] & 0xF, 0);
            let q2 = q(ql[l + 32] & 0xF, 2);
            let q3 = q(ql[l] >> 4, 4);
            let q4 = q(ql[l + 32] >> 4, 6);
            let s = |k: usize| f32::from(sc[is + k] as i8);
            y[l] = d * s(0) * q1 as f32;
            y[l + 32] = d * s(2) * q2 as f32;
            y[l + 64] = d * s(4) * q3 as f32;
            y[l + 96] = d * s(6) * q4 as f32;
        }
        out.extend_from_slice(&y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_and_q4_1_by_hand() {
        let mut b = vec![0u8; 34];
        b[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        b[2] = 4;
        b[3] = (-6i8) as u8;
        let v = decode(Stored::Q8_0, &b, 32).unwrap();
        assert_eq!((v[0], v[1], v[2]), (2.0, -3.0, 0.0));

        let mut b = vec![0u8; 20];
        b[..2].copy_from_slice(&f16::from_f32(2.0).to_le_bytes());
        b[2..4].copy_from_slice(&f16::from_f32(-1.0).to_le_bytes());
        b[4] = 0x53; // element 0: 3, element 16: 5
        let v = decode(Stored::Q4_1, &b, 32).unwrap();
        assert_eq!((v[0], v[16], v[1]), (5.0, 9.0, -1.0));
    }

    #[test]
    fn wrong_sizes_and_unknown_types_are_named() {
        assert!(decode(Stored::Q4_0, &[0; 17], 32).unwrap_err().contains("truncated"));
        assert!(decode(Stored::Q4_K, &[0; 144], 32).unwrap_err().contains("not whole q4_k"));
        assert_eq!(Stored::from_ggml(11).unwrap_err(), "Q3_K");
        assert_eq!(Stored::from_ggml(99).unwrap_err(), "unknown type id 99");
        // A crafted shape whose element count fits but whose byte size does not (found by the
        // `gguf` fuzz target: this multiplication overflowed).
        let n = usize::MAX / 256 * 256;
        assert!(Stored::F32.bytes_for(n).unwrap_err().contains("too many for this platform"));
        assert_eq!(Stored::Q6_K.bytes_for(256), Ok(210));
        assert!(decode(Stored::Q8_0, &[0; 34], n).unwrap_err().contains("too many"));
    }
}
