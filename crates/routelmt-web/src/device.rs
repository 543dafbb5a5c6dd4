//! The browser's device choice: WebGPU when `navigator.gpu` gives an adapter whose limits fit
//! every buffer the model creates (no buffer exceeds the model's 128 MiB cap), else the wasm
//! CPU backend (burn flex), with the reason. wgpu can be initialized once per page (or worker),
//! so the first outcome is kept.

use std::cell::RefCell;

use burn::tensor::Device;
use serde_json::Value;

use crate::error::{Result, WebError};

/// What the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// WebGPU if it fits, else the CPU.
    Auto,
    /// WebGPU or an error.
    WebGpu,
    /// The wasm CPU backend.
    Cpu,
}

impl Want {
    /// Parses the `device` option.
    pub fn parse(s: Option<&str>) -> Result<Self> {
        match s.unwrap_or("auto") {
            "auto" => Ok(Self::Auto),
            "webgpu" | "gpu" => Ok(Self::WebGpu),
            "cpu" => Ok(Self::Cpu),
            other => {
                Err(WebError::Device(format!("unknown '{other}' (expected auto, webgpu or cpu)")))
            }
        }
    }
}

/// The device a router runs on, and what `info()` says about it.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// The burn device.
    pub device: Device,
    /// "webgpu" or "cpu".
    pub kind: &'static str,
    /// Why this device.
    pub reason: String,
    /// The adapter's description (WebGPU only).
    pub adapter: Option<String>,
    /// The adapter limits that matter here (WebGPU only).
    pub limits: Option<Value>,
    /// Whether the adapter offers `shader-f16` (f16 is used only then; weights run in f32).
    pub shader_f16: bool,
}

#[derive(Clone)]
struct Gpu {
    device: Device,
    adapter: String,
    limits: Value,
    fits: bool,
    shader_f16: bool,
}

thread_local! {
    static GPU: RefCell<Option<std::result::Result<Gpu, String>>> = const { RefCell::new(None) };
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "atomics")))]
fn has_navigator_gpu() -> bool {
    use wasm_bindgen::JsValue;
    let global = js_sys::global();
    js_sys::Reflect::get(&global, &JsValue::from_str("navigator"))
        .and_then(|n| js_sys::Reflect::get(&n, &JsValue::from_str("gpu")))
        .is_ok_and(|g| !g.is_undefined() && !g.is_null())
}

/// The threaded build has no WebGPU: wgpu's WebGPU objects cannot be shared between threads.
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
async fn init_gpu() -> std::result::Result<Gpu, String> {
    Err("this is the threaded wasm CPU build, which has no WebGPU (the single-threaded \
         package has it)"
        .into())
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "atomics")))]
async fn init_gpu() -> std::result::Result<Gpu, String> {
    if !has_navigator_gpu() {
        return Err("this browser has no WebGPU (navigator.gpu is missing)".into());
    }
    let (device, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| format!("WebGPU refused: {e}"))?;
    let info = setup.adapter.get_info();
    let limits = setup.adapter.limits();
    let need = routelmt_model::MAX_BUFFER_BYTES as u64;
    let fits = limits.max_storage_buffer_binding_size >= need && limits.max_buffer_size >= need;
    let shader_f16 =
        setup.adapter.features().contains(burn::tensor::wgpu::wgpu::Features::SHADER_F16);
    Ok(Gpu {
        device,
        adapter: match info.name.is_empty() {
            // Browsers hide adapter names unless asked; the backend is still worth saying.
            true => format!("{:?} adapter", info.backend),
            false => format!("{} ({:?}, {})", info.name, info.backend, info.driver),
        },
        limits: serde_json::json!({
            "maxStorageBufferBindingSize": limits.max_storage_buffer_binding_size,
            "maxBufferSize": limits.max_buffer_size,
            "needed": need,
        }),
        fits,
        shader_f16,
    })
}

/// The WebGPU outcome, initialized on first use.
async fn gpu() -> std::result::Result<Gpu, String> {
    if let Some(done) = GPU.with(|g| g.borrow().clone()) {
        return done;
    }
    let outcome = init_gpu().await;
    GPU.with(|g| *g.borrow_mut() = Some(outcome.clone()));
    outcome
}

/// Chooses the device for `want`.
pub async fn choose(want: Want) -> Result<Chosen> {
    let cpu = |reason: String| Chosen {
        device: Device::flex(),
        kind: "cpu",
        reason,
        adapter: None,
        limits: None,
        shader_f16: false,
    };
    if want == Want::Cpu {
        return Ok(cpu("asked for the CPU".into()));
    }
    match (gpu().await, want) {
        (Ok(g), _) if g.fits => Ok(Chosen {
            device: g.device,
            kind: "webgpu",
            reason: if want == Want::Auto {
                "auto: WebGPU adapter found and its limits fit the model".into()
            } else {
                "asked for WebGPU".into()
            },
            adapter: Some(g.adapter),
            limits: Some(g.limits),
            shader_f16: g.shader_f16,
        }),
        (Ok(g), Want::WebGpu) => Err(WebError::Device(format!(
            "the WebGPU adapter {} cannot hold the model's buffers (limits {})",
            g.adapter, g.limits
        ))),
        (Ok(g), _) => Ok(cpu(format!(
            "auto: the WebGPU adapter's limits are too small ({}); using the CPU",
            g.limits
        ))),
        (Err(e), Want::WebGpu) => Err(WebError::Device(e)),
        (Err(e), _) => Ok(cpu(format!("auto: {e}; using the CPU"))),
    }
}
