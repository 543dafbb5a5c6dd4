// Writes a full-size Qwen3-0.6B / LMT-60-0.6B checkpoint with random weights (bf16, one
// model.safetensors of about 1.2 GB, plus config.json) for the browser benchmarks: the real
// architecture and byte size, no download. Projections ~U(-0.035, 0.035) (std 0.02), norms 1.
// Run: node web/bench/make_full_size.mjs OUT_DIR
import fs from "node:fs";
import path from "node:path";

const out = process.argv[2];
if (!out) {
  console.error("usage: node web/bench/make_full_size.mjs OUT_DIR");
  process.exit(2);
}
// Qwen3-0.6B: vocab, hidden, MLP, layers, query heads, KV heads, head_dim.
const [vocab, hidden, mlp, layers, heads, kvHeads, headDim] = [151936, 1024, 3072, 28, 16, 8, 128];
const C = {
  architectures: ["Qwen3ForCausalLM"],
  model_type: "qwen3",
  ...{ vocab_size: vocab, hidden_size: hidden, intermediate_size: mlp, num_hidden_layers: layers },
  ...{ num_attention_heads: heads, num_key_value_heads: kvHeads, head_dim: headDim },
  ...{ rms_norm_eps: 1e-6, rope_theta: 1000000, tie_word_embeddings: true },
  ...{ max_position_embeddings: 40960, torch_dtype: "bfloat16", hidden_act: "silu", attention_bias: false },
};
const h = C.hidden_size;
const d = C.head_dim;
const tensors = [["model.embed_tokens.weight", [C.vocab_size, h], "random"]];
for (let n = 0; n < C.num_hidden_layers; n++) {
  const p = `model.layers.${n}`;
  tensors.push(
    [`${p}.self_attn.q_proj.weight`, [C.num_attention_heads * d, h], "random"],
    [`${p}.self_attn.k_proj.weight`, [C.num_key_value_heads * d, h], "random"],
    [`${p}.self_attn.v_proj.weight`, [C.num_key_value_heads * d, h], "random"],
    [`${p}.self_attn.o_proj.weight`, [h, C.num_attention_heads * d], "random"],
    [`${p}.self_attn.q_norm.weight`, [d], "ones"],
    [`${p}.self_attn.k_norm.weight`, [d], "ones"],
    [`${p}.mlp.gate_proj.weight`, [C.intermediate_size, h], "random"],
    [`${p}.mlp.up_proj.weight`, [C.intermediate_size, h], "random"],
    [`${p}.mlp.down_proj.weight`, [h, C.intermediate_size], "random"],
    [`${p}.input_layernorm.weight`, [h], "ones"],
    [`${p}.post_attention_layernorm.weight`, [h], "ones"],
  );
}
tensors.push(["model.norm.weight", [h], "ones"]);

const header = {};
let offset = 0;
for (const [name, shape] of tensors) {
  const bytes = 2 * shape.reduce((a, b) => a * b, 1);
  header[name] = { dtype: "BF16", shape, data_offsets: [offset, offset + bytes] };
  offset += bytes;
}
header.__metadata__ = { format: "pt" };
let json = JSON.stringify(header);
json += " ".repeat((8 - (json.length % 8)) % 8);
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, "config.json"), JSON.stringify(C, null, 2));
const fd = fs.openSync(path.join(out, "model.safetensors"), "w");
const len = Buffer.alloc(8);
len.writeBigUInt64LE(BigInt(json.length));
fs.writeSync(fd, len);
fs.writeSync(fd, Buffer.from(json));

// xorshift32 → bf16 bits of a uniform value in (-0.035, 0.035).
let state = 2463534242;
const ONE = 0x3f80;
const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);
const CHUNK = 1 << 20;
const buf = new Uint16Array(CHUNK);
for (const [, shape, kind] of tensors) {
  let left = shape.reduce((a, b) => a * b, 1);
  while (left > 0) {
    const n = Math.min(left, CHUNK);
    for (let i = 0; i < n; i++) {
      if (kind === "ones") {
        buf[i] = ONE;
        continue;
      }
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      f[0] = ((state >>> 0) / 4294967296 - 0.5) * 0.07;
      buf[i] = u[0] >>> 16;
    }
    fs.writeSync(fd, Buffer.from(buf.buffer, 0, 2 * n));
    left -= n;
  }
}
fs.closeSync(fd);
console.error(`wrote ${out}/model.safetensors (${((8 + json.length + offset) / 1e9).toFixed(2)} GB) and config.json`);
