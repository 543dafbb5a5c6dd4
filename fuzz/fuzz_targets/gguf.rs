//! The GGUF reader: a whole file and a head of it (as the browser reads one), every tensor's
//! size, range and bytes, and the decoding of small tensors to f32.
#![no_main]

use libfuzzer_sys::fuzz_target;
use routelmt_model::formats::dtype;
use routelmt_model::formats::gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = GgufFile::parse(data, "fuzz.gguf") {
        let _ = g.architecture();
        let _ = g.type_counts();
        for t in &g.infos {
            let _ = t.shape();
            let (Ok(n), Ok(bytes)) = (g.elements(t), g.tensor_bytes(t)) else { continue };
            if let (true, Ok(stored)) = (n <= 1 << 16, dtype::Stored::from_ggml(t.ggml_type)) {
                let _ = dtype::decode(stored, bytes, n);
            }
        }
    }
    // The same bytes as the head of a file twice as long: ranges past the head are known but
    // not readable.
    let file_len = (data.len() as u64).saturating_mul(2);
    if let Ok(Some(g)) = GgufFile::parse_head(data, file_len, "head.gguf") {
        for t in &g.infos {
            if let Ok(Some(range)) = g.tensor_range(t) {
                let _ = g.bytes(range);
            }
        }
    }
});
