//! Loading ready for inference: a model packed block by block as it loads
//! ([`crate::LoadOptions::weights`]), with a LoRA merge applied per block, and a GGUF file
//! loaded from its head and byte ranges (the browser's way) give exactly the states of the
//! whole-model way (load, merge, then prepare).

use burn::tensor::Device;

use crate::checkpoint::{GgufCheckpoint, RangeLoad};
use crate::embedding::EmbeddingData;
use crate::formats::Named;
use crate::model::{LayerEdit, Model};
use crate::tests::fixtures;
use crate::{HostEmbedding, LoadOptions, Precision, hf};

fn prompts(vocab: usize) -> Vec<Vec<u32>> {
    (0..9u64)
        .map(|r| {
            (0..3 + r * 5).map(|t| ((r * 7919 + t * 104_729 + 13) % vocab as u64) as u32).collect()
        })
        .collect()
}

fn states(m: &Model) -> Vec<Vec<f32>> {
    let ps = prompts(m.config.vocab_size);
    let mut out = Vec::new();
    for layer in [0, 1, m.config.num_hidden_layers] {
        out.extend(m.last_hidden(&ps, layer, 4).unwrap().read().unwrap());
    }
    out
}

/// The embedding table as a q8 (or q4) load holds it.
fn quantized_table(e: &HostEmbedding, weights: Precision) -> HostEmbedding {
    let mut all = vec![0f32; e.vocab() * e.dim()];
    for (id, row) in all.chunks_mut(e.dim()).enumerate() {
        e.gather_row(id as u32, row);
    }
    let data = if weights == Precision::Q4 {
        let (mut q, mut d, mut m) = (Vec::new(), Vec::new(), Vec::new());
        crate::embedding::q4_append(&all, &mut q, &mut d, &mut m);
        EmbeddingData::Q4 { q, d, m }
    } else {
        EmbeddingData::q8_from(&all)
    };
    HostEmbedding::new(e.vocab(), e.dim(), data)
}

#[test]
fn packing_while_loading_equals_preparing_after_with_and_without_a_merge() {
    let cpu = Device::flex();
    let dir = fixtures().join("models/tiny-gqa");
    let config = hf::read_config(&dir).unwrap();
    let c = std::fs::read(fixtures().join("models/tiny-gqa-lora/adapter_config.json")).unwrap();
    let w =
        std::fs::read(fixtures().join("models/tiny-gqa-lora/adapter_model.safetensors")).unwrap();
    let adapter = crate::PeftAdapter::from_peft(&c, "c", &w, "w", &config).unwrap();
    for weights in [Precision::F32, Precision::F16, Precision::Q8, Precision::Q4] {
        for merge in [false, true] {
            let (mut whole, _) = hf::load_folder(&dir, &cpu).unwrap();
            if merge {
                whole.decoder = adapter.merge_into(whole.decoder, &cpu);
            }
            if weights.quantized_embedding() {
                whole.embed_tokens = quantized_table(&whole.embed_tokens, weights);
            }
            let whole = whole.prepared(weights).unwrap();
            let edit = merge.then(|| LayerEdit {
                label: adapter.fingerprint(),
                apply: Box::new(|n: usize, layer: &mut crate::decoder::block::DecoderLayer| {
                    adapter.merge_layer(n, layer, &cpu)
                }),
            });
            let opts = LoadOptions { lm_head: false, weights: Some(weights) };
            let (packed, _) = hf::load_edited(&dir, opts, edit, &cpu).unwrap();
            assert_eq!(packed.weights(), Some(weights));
            assert_eq!(packed.edit().is_some(), merge);
            assert!(packed.cpu_decoder().is_some() && packed.decoder.layers.is_empty());
            assert_eq!(
                packed.embed_tokens.dtype(),
                match weights {
                    Precision::Q8 | Precision::Q4 => weights.name(),
                    _ => "f32",
                }
            );
            assert_eq!(states(&packed), states(&whole), "{weights} merge {merge}");
            // A packed model is not prepared twice.
            assert!(packed.prepared(weights).is_err());
        }
    }
}

#[test]
fn a_gguf_loads_from_its_head_and_byte_ranges_as_from_the_whole_file() {
    let cpu = Device::flex();
    for name in ["tiny-qwen3.gguf", "tiny-llama.gguf", "tiny-qwen2.gguf"] {
        let bytes = std::fs::read(fixtures().join("gguf").join(name)).unwrap();
        for weights in [None, Some(Precision::Q8), Some(Precision::Q4)] {
            let opts = LoadOptions { lm_head: false, weights };
            let whole = GgufCheckpoint::parse(Named::new(name, &bytes)).unwrap();
            let (want, want_report) = whole.load(opts, None, &cpu).unwrap();
            // The browser's way: the head grows until the table fits, then one group's
            // ranges at a time.
            let mut len = 64;
            let head = loop {
                let h =
                    GgufCheckpoint::parse_head(Named::new(name, &bytes[..len]), bytes.len() as u64);
                match h.unwrap() {
                    Some(g) => break g,
                    None => len = (len * 2).min(bytes.len()),
                }
            };
            assert_eq!(head.config, whole.config);
            let tok = head.tokenizer().unwrap();
            assert_eq!(
                tok.encode("Hello world").unwrap(),
                whole.tokenizer().unwrap().encode("Hello world").unwrap()
            );
            let mut load = RangeLoad::new(&head.config, head.index().unwrap(), opts, None, &cpu);
            let mut pieces = 0;
            for group in 0..load.groups() {
                let mut got = Vec::new();
                for w in load.wants(group).unwrap() {
                    // A q8/q4 load takes the embedding table in pieces: here 16 of them.
                    if let Some(piece) = load.piece_bytes(&w) {
                        assert!(weights.is_some_and(Precision::quantized_embedding));
                        assert!(piece >= w.end - w.start, "tiny tables fit one 4096-row piece");
                        let step = (w.end - w.start) / 16;
                        for at in (w.start..w.end).step_by(step as usize) {
                            let end = (at + step).min(w.end) as usize;
                            load.add_piece(&w, &bytes[at as usize..end]).unwrap();
                            pieces += 1;
                        }
                        continue;
                    }
                    got.push((w.name, bytes[w.start as usize..w.end as usize].to_vec()));
                }
                load.add(group, got).unwrap();
            }
            let (got, report) = load.finish().unwrap();
            assert_eq!(pieces > 0, weights.is_some_and(Precision::quantized_embedding));
            assert_eq!(report.unused, want_report.unused, "{name}");
            assert_eq!(report.dtypes, want_report.dtypes, "{name}");
            assert_eq!(states(&got), states(&want), "{name} {weights:?}");
        }
    }
}
