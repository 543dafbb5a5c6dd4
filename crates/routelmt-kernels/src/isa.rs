//! Which micro-kernel this machine runs: [`Isa`], detected at run time on x86-64.

/// Which micro-kernel this machine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// 8 × 32 tiles, 512-bit registers.
    Avx512,
    /// 6 × 16 tiles, AVX2 + FMA.
    Avx2,
    /// 4 × 16 tiles, whatever the compiler targets (wasm `simd128`, NEON, SSE2).
    Portable,
}

impl Isa {
    /// The best kernel this CPU supports (`ROUTELMT_ISA=avx2|portable` lowers it, for tests
    /// and benchmarks).
    pub fn detect() -> Self {
        let cap = std::env::var("ROUTELMT_ISA").ok();
        #[cfg(target_arch = "x86_64")]
        {
            let allow = |name: &str| match cap.as_deref() {
                None => true,
                Some("avx512") => true,
                Some("avx2") => name != "avx512",
                Some(_) => false,
            };
            let avx2 =
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
            if allow("avx512") && avx2 && std::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if allow("avx2") && avx2 {
                return Self::Avx2;
            }
        }
        let _ = cap;
        Self::Portable
    }

    /// Whether this CPU can run the kernel.
    pub fn supported(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => Self::Avx2.supported() && std::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Whether q8/q4 weights run on the int8 kernels (AVX-512 VNNI and BW) rather than widened
    /// to f32.
    pub fn int8(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Self::Avx512 {
            return std::is_x86_feature_detected!("avx512vnni")
                && std::is_x86_feature_detected!("avx512bw");
        }
        false
    }

    /// Rows per micro-panel of `A`.
    pub fn mr(self) -> usize {
        match self {
            Self::Avx512 => 8,
            Self::Avx2 => 6,
            Self::Portable => 4,
        }
    }

    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512 if self.int8() => "avx512+vnni",
            Self::Avx512 => "avx512",
            Self::Avx2 => "avx2+fma",
            Self::Portable => "portable",
        }
    }
}
