//! Timing of training steps for `routelmt bench train`: the same forward, loss and AdamW
//! update as a run, on one fixed batch, without data, validation or checkpoints.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use routelmt_model::readback::read;
use routelmt_model::router::peft;
use routelmt_model::{HeadKind, LoraSettings, Model, RouterHead};

use crate::error::Result;
use crate::settings::adamw;
use crate::step::Trainable;

/// Wall-clock seconds of `iters` optimizer steps (after `warmup` untimed ones) on one batch:
/// with LoRA, forward + backward through the decoder + AdamW on adapters and head; without, a
/// plain prefill (no autodiff) + the head's step.
pub fn time_steps(
    model: Model,
    lora: Option<LoraSettings>,
    layer: usize,
    batch: &[Vec<u32>],
    iters: usize,
    warmup: usize,
) -> Result<Vec<f64>> {
    let plain = model.device().clone();
    let ad = plain.clone().autodiff();
    let decoder = match lora {
        Some(l) => peft::apply_new_lora(model.decoder.clone(), l)?,
        None => model.decoder.clone().no_grad(),
    };
    let head = RouterHead::init(model.config.hidden_size, HeadKind::Gain, &plain);
    let mut m = Trainable { decoder, head }.train();
    let mut optim = adamw(0.01);
    let y = Tensor::<2>::zeros([batch.len(), 1], &ad);
    let mut times = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let t0 = std::time::Instant::now();
        let hidden = match lora {
            Some(_) => {
                m.decoder.forward_last(&model.config, &model.embed_tokens, batch, layer, &ad)
            }
            None => {
                let part = model.last_hidden_chunk(batch, layer)?;
                Tensor::from_data(model.to_tensor(part).into_data(), &ad)
            }
        };
        let diff = m.head.forward(hidden) - y.clone();
        let loss = (diff.clone() * diff).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        m = optim.step(1e-4, m, grads);
        read(m.head.linear.weight.val())?; // wait for the device
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}
