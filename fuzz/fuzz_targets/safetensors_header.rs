//! safetensors files: the header's end from the first bytes (as the browser reads a file by
//! ranges), the header's entries, a whole file in the tensor index, and small tensors decoded;
//! the same bytes as a sharded checkpoint's `model.safetensors.index.json`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use routelmt_model::formats::{TensorIndex, dtype, safetensors};

fuzz_target!(|data: &[u8]| {
    let _ = safetensors::shard_names(data, safetensors::INDEX);
    let file_size = data.len() as u64;
    if let Ok(end) = safetensors::header_end(data, file_size, "model.safetensors") {
        if let Some(header) = usize::try_from(end).ok().and_then(|end| data.get(8..end)) {
            let _ = safetensors::header_entries(header, file_size, "model.safetensors");
        }
    }
    let mut index = TensorIndex::default();
    if index.add_file("model.safetensors", data).is_ok() {
        for (_, source) in index.sources(&[data]) {
            if source.len() <= 1 << 16 {
                let _ = dtype::decode(source.dtype, &source.data, source.len());
            }
        }
    }
});
