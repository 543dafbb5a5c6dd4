//! The scorer: a base model with a router's adapter merged into its weights, plus the router's
//! head. Prepared requests in, one row of head outputs per request out. Every front door (the
//! CLI's `score` and `route`, the browser package, the gateway) scores through this type, so a
//! request gets the same score wherever it is routed.

use serde_json::{Value, json};

use super::Router;
use super::head::HeadKind;
use crate::error::{ModelError, Result};
use crate::model::Model;
use crate::precision::Precision;
use crate::readback::Pending;
use crate::text::chat::ChatMode;
use crate::text::prompt::PromptStyle;

/// A base model prepared with a router (LoRA merged), and the router.
#[derive(Debug)]
pub struct Scorer {
    router: Router,
    model: Model,
}

impl Scorer {
    /// Merges the router's adapter (if any) into `model` and prepares it for inference with
    /// `weights` (the router's `weights` when `None`): a request then costs exactly one plain
    /// prefill. The router must have been checked against this base model
    /// ([`Router::from_files`] does).
    ///
    /// A model made ready as it loaded ([`crate::LoadOptions::weights`]) is taken as it is,
    /// once checked: it must have been loaded with this router's [`Router::merge_edit`] (or
    /// none, for a router without an adapter), and with `weights` when given.
    pub fn new(model: Model, router: Router, weights: Option<Precision>) -> Result<Self> {
        let Some(loaded) = model.weights() else {
            let model = router.prepare_for_inference(model, weights)?;
            return Ok(Self { router, model });
        };
        let merged = router.adapter.as_ref().map(|a| a.fingerprint());
        if model.edit() != merged.as_deref() {
            return Err(ModelError::Input(format!(
                "the model was loaded with {} merged, the router needs {}",
                model.edit().unwrap_or("no adapter"),
                merged.as_deref().unwrap_or("none")
            )));
        }
        if let Some(w) = weights.filter(|w| *w != loaded) {
            return Err(ModelError::Input(format!(
                "the model was loaded with {loaded} weights, not {w}"
            )));
        }
        Ok(Self { router, model })
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The prepared model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The prompt revision the router was trained with.
    pub fn prompt_style(&self) -> PromptStyle {
        self.router.config.prompt_style
    }

    /// Whether the router's prompts use the model's chat template.
    pub fn chat_mode(&self) -> ChatMode {
        self.router.config.chat_template
    }

    /// Whether the router routes the lowest score first (a quality head).
    pub fn lowest_first(&self) -> bool {
        self.router.config.head == HeadKind::Quality
    }

    /// Head outputs of any number of token sequences, in input order, at most `max_rows` per
    /// device pass (fewer when a pass would exceed the device's buffer limit), not read back
    /// yet (`.read()` natively, `.read_async().await` in the browser).
    pub fn score(&self, batch: &[Vec<u32>], max_rows: usize) -> Result<Pending> {
        self.router.score(&self.model, batch, max_rows)
    }

    /// The record fields one row of head outputs becomes: `score` (the routing score: the
    /// predicted gain, or the predicted quality for a quality head) and, for a `both` head,
    /// `pred_quality`.
    pub fn fields(&self, outputs: &[f32]) -> Vec<(&'static str, Value)> {
        let mut fields = vec![("score", json!(outputs[0]))];
        if self.router.config.head == HeadKind::Both {
            fields.push(("pred_quality", json!(outputs[1])));
        }
        fields
    }
}
