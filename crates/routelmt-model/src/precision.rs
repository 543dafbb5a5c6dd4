//! [`Precision`]: how the CPU decoder stores its packed weights (`--weights`, router.json's
//! `weights`), mapped one to one onto the kernels' [`PackFormat`].

use routelmt_kernels::PackFormat;

/// How a packed weight stores its values (`--weights`, router.json's `weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 4 bytes per weight.
    #[default]
    F32,
    /// IEEE half: 2 bytes per weight.
    F16,
    /// int8 with one f32 scale per 32 weights of a column: 1.125 bytes per weight.
    Q8,
    /// 4-bit with an f16 scale and an f16 minimum per 32 weights of a column, each block
    /// rounded as GGUF `Q4_0` or `Q4_1` rounds it, whichever is closer (so the weights of
    /// either kind of file are kept exactly): 0.625 bytes per weight.
    Q4,
}

impl Precision {
    /// The name used by `--weights` and router.json.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8 => "q8",
            Self::Q4 => "q4",
        }
    }

    /// The kernels' store format for these weights.
    pub fn format(self) -> PackFormat {
        match self {
            Self::F32 => PackFormat::F32,
            Self::F16 => PackFormat::F16,
            Self::Q8 => PackFormat::Q8,
            Self::Q4 => PackFormat::Q4,
        }
    }

    /// Whether the embedding table is held quantized rather than in its stored type: as q8
    /// with q8 weights, as q4 with q4 weights (a GGUF `Q8_0` table stays q8 as stored).
    pub fn quantized_embedding(self) -> bool {
        matches!(self, Self::Q8 | Self::Q4)
    }
}

crate::error::from_str_by_name!(
    Precision, "weights", "f32" => F32, "f16" => F16, "q8" => Q8, "q4" => Q4
);

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_precision_maps_onto_its_own_pack_format() {
        for p in [Precision::F32, Precision::F16, Precision::Q8, Precision::Q4] {
            assert_eq!(p.format().name(), p.name());
            assert_eq!(p.name().parse::<Precision>(), Ok(p));
        }
    }
}
