//! Checkpoints and publishing. A run keeps its work in `OUT/.routelmt-train/`: `last/`
//! (adapter, raw standardized head, optimizer state, loop position) after every epoch and every
//! `checkpoint_every` optimizer steps, and `best/` (the best epoch's router folder). Each is
//! written beside its target and swapped in by renames, so an interrupt at any moment leaves a
//! usable checkpoint. Publishing writes the best router into `OUT` (`router.json` last, its
//! presence marks a complete folder) and removes the work folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use routelmt_model::router::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEAD_FILE};
use routelmt_model::{ModelConfig, PeftAdapter, Router, RouterHead};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::settings::{TrainSettings, adamw};
use crate::step::{EpochReport, Trainable};

/// The loop position and everything needed to resume, in `last/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct State {
    pub format: String,
    pub settings: TrainSettings,
    pub base_fingerprint: String,
    pub train_digest: String,
    pub valid_digest: String,
    /// (mean, std) of each label.
    pub label_norm: Vec<(f64, f64)>,
    /// Optimizer steps done.
    pub step: usize,
    /// 0-based epoch in progress.
    pub epoch: usize,
    /// Next micro-batch of that epoch.
    pub batch: usize,
    /// Sum and count of the epoch's losses so far.
    pub epoch_loss: (f64, usize),
    pub history: Vec<EpochReport>,
    pub adapter_ids: BTreeMap<String, [u64; 2]>,
    pub head_ids: [u64; 2],
}

/// Version tag of `state.json`.
pub(crate) const STATE_FORMAT: &str = "routelmt-train-state/1";
const WORK_DIR: &str = ".routelmt-train";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const STATE_FILE: &str = "state.json";

/// What a checkpoint restores.
pub(crate) struct Restored {
    /// The adapter (LoRA runs).
    pub adapter: Option<PeftAdapter>,
    /// The head as trained (standardized labels).
    pub head: RouterHead,
    /// The loop position.
    pub state: State,
    /// The optimizer with its moments.
    pub optim: ModuleOptimizer,
    /// The best epoch's router so far, if an epoch finished.
    pub best: Option<Router>,
}

/// The work folder of a run writing to `out`.
pub(crate) struct Checkpoints {
    work: PathBuf,
}

impl Checkpoints {
    /// The checkpoints of a run writing to `out`.
    pub fn new(out: &Path) -> Self {
        Self { work: out.join(WORK_DIR) }
    }

    /// Errors if an interrupted run's checkpoint is in the way of a fresh run.
    pub fn check_absent(&self) -> Result<()> {
        if self.work.exists() {
            return Err(TrainError::checkpoint(
                &self.work,
                "an interrupted run is here; pass --resume to continue it, or delete the folder",
            ));
        }
        Ok(())
    }

    /// Writes `last/`: adapter, raw (standardized) head, optimizer state and loop position.
    pub fn save_last(&self, state: &State, m: &Trainable, optim: &ModuleOptimizer) -> Result<()> {
        let plain = m.valid();
        let mut files: Vec<(&str, Vec<u8>)> = vec![(HEAD_FILE, plain.head.to_safetensors()?)];
        if let Some(l) = state.settings.lora {
            let adapter =
                PeftAdapter::extract(&plain.decoder, l.rank, l.alpha)?.ok_or_else(|| {
                    TrainError::checkpoint(&self.work, "the decoder lost its LoRA adapters")
                })?;
            let (cfg, weights) = adapter.to_peft("base")?;
            files.push((ADAPTER_CONFIG, cfg));
            files.push((ADAPTER_WEIGHTS, weights));
        }
        let optim_bytes = optim
            .into_bytes()
            .map_err(|e| TrainError::checkpoint(&self.work, format!("optimizer state: {e:?}")))?;
        files.push((OPTIMIZER_FILE, optim_bytes.to_vec()));
        let json = serde_json::to_vec_pretty(state)
            .map_err(|e| TrainError::checkpoint(&self.work, e.to_string()))?;
        files.push((STATE_FILE, json));
        write_dir(&self.work.join("last"), &files)
    }

    /// Writes `best/`: the best epoch's router folder.
    pub fn save_best(&self, router: &Router) -> Result<()> {
        write_dir(&self.work.join("best"), &router.to_files()?)
    }

    /// Restores the last checkpoint, checking it was made by the same run (`expect`: settings,
    /// base model, data). burn materializes optimizer state on its default device: a caller
    /// that uses wgpu with its own set-up must have set it up before (see `device::select`).
    pub fn restore(
        &self,
        expect: &State,
        config: &ModelConfig,
        device: &Device,
    ) -> Result<Restored> {
        let dir = [self.work.join("last"), self.work.join("last.old")]
            .into_iter()
            .find(|d| d.join(STATE_FILE).is_file())
            .ok_or_else(|| {
                TrainError::checkpoint(
                    &self.work,
                    "no checkpoint to resume from (run without --resume)",
                )
            })?;
        let read_file = |name: &str| -> Result<Vec<u8>> {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| TrainError::io(&p, e))
        };
        let mut state: State = serde_json::from_slice(&read_file(STATE_FILE)?).map_err(|e| {
            TrainError::checkpoint(&dir.join(STATE_FILE), format!("not a valid state file: {e}"))
        })?;
        check_same_run(&state, expect, &dir)?;
        state.settings.checkpoint_every = expect.settings.checkpoint_every;
        let adapter = match expect.settings.lora {
            Some(_) => Some(PeftAdapter::from_peft(
                &read_file(ADAPTER_CONFIG)?,
                ADAPTER_CONFIG,
                &read_file(ADAPTER_WEIGHTS)?,
                ADAPTER_WEIGHTS,
                config,
            )?),
            None => None,
        };
        let head = RouterHead::from_safetensors(
            &read_file(HEAD_FILE)?,
            HEAD_FILE,
            config.hidden_size,
            expect.settings.head,
            device,
        )?;
        let optim = adamw(expect.settings.weight_decay)
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(read_file(OPTIMIZER_FILE)?))
            .map_err(|e| TrainError::checkpoint(&dir.join(OPTIMIZER_FILE), format!("{e:?}")))?;
        let best_dir = self.work.join("best");
        let best = if state.history.is_empty() {
            None // no epoch finished yet
        } else {
            Some(routelmt_model::hf::read_router(&best_dir, config, device)?)
        };
        Ok(Restored { adapter, head, state, optim, best })
    }

    /// Publishes `router` into `out` (`router.json` last; a head-only router removes the
    /// adapter files an earlier router left) and removes the work folder.
    pub fn publish(self, router: &Router, out: &Path) -> Result<()> {
        for (name, bytes) in router.to_files()? {
            write_file(&out.join(name), &bytes)?;
        }
        if router.adapter.is_none() {
            for stale in [ADAPTER_CONFIG, ADAPTER_WEIGHTS] {
                let _ = std::fs::remove_file(out.join(stale));
            }
        }
        std::fs::remove_dir_all(&self.work).map_err(|e| TrainError::io(&self.work, e))
    }
}

/// Errors unless a checkpoint's state was made by the run described by `expect`.
fn check_same_run(state: &State, expect: &State, dir: &Path) -> Result<()> {
    let mismatch = |what: &str| {
        Err(TrainError::checkpoint(
            dir,
            format!("was made with different {what}; resume with the same command, or start over"),
        ))
    };
    if state.format != STATE_FORMAT {
        return mismatch("software (state format)");
    }
    let mut settings = state.settings.clone();
    settings.checkpoint_every = expect.settings.checkpoint_every;
    if settings != expect.settings {
        return mismatch("settings");
    }
    if state.base_fingerprint != expect.base_fingerprint {
        return mismatch("base model");
    }
    if state.train_digest != expect.train_digest || state.valid_digest != expect.valid_digest {
        return mismatch("training or validation data");
    }
    Ok(())
}

/// Writes a file beside its target and renames it into place.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

/// Replaces folder `dir` with `files` so that a complete version exists at every moment:
/// `dir.new` is written, `dir` moves to `dir.old`, `dir.new` to `dir`, `dir.old` is removed.
fn write_dir(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    let with = |suffix: &str| {
        let mut name = dir.file_name().unwrap_or_default().to_owned();
        name.push(suffix);
        dir.with_file_name(name)
    };
    let (new, old) = (with(".new"), with(".old"));
    let _ = std::fs::remove_dir_all(&new);
    std::fs::create_dir_all(&new).map_err(|e| TrainError::io(&new, e))?;
    for (name, bytes) in files {
        let p = new.join(name);
        std::fs::write(&p, bytes).map_err(|e| TrainError::io(&p, e))?;
    }
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| TrainError::io(dir, e))?;
    }
    std::fs::rename(&new, dir).map_err(|e| TrainError::io(dir, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}
