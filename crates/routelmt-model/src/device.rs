//! Choosing the compute device at run time (`--device auto|cpu|gpu`).
//!
//! `cpu` is burn's `flex` backend. `gpu` is wgpu (Vulkan, Metal, DX12; software adapters such
//! as Mesa lavapipe count, which is how CI exercises this path). `auto` takes wgpu when its
//! adapter is a real GPU and flex otherwise: a software adapter is far slower than flex.
//! wgpu's runtime can be initialized once per process, so the result is cached.

use std::sync::OnceLock;

use burn::tensor::Device;

use crate::error::{ModelError, Result};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DeviceChoice {
    /// A hardware GPU adapter if one exists, else the CPU.
    #[default]
    Auto,
    /// The CPU (the project's inference kernels; burn flex for training).
    Cpu,
    /// wgpu (Vulkan, Metal, DX12; software adapters count; fails if there is none).
    Gpu,
}

crate::error::from_str_by_name!(DeviceChoice, "device", "auto" => Auto, "cpu" => Cpu, "gpu" => Gpu);

/// A device, a description of it ("cpu (burn flex)", "gpu: llvmpipe ... (Vulkan, Cpu)") and
/// why it was chosen.
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    /// The burn device.
    pub device: Device,
    /// What runs, for logs and reports.
    pub description: String,
    /// Why this device: what was asked and what was found.
    pub reason: String,
    /// True for wgpu.
    pub is_gpu: bool,
}

impl std::fmt::Display for SelectedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.description, self.reason)
    }
}

struct Gpu {
    device: Device,
    description: String,
    real_gpu: bool,
}

/// Initializes wgpu once per process. Mesa's drivers (lavapipe included) print
/// `XDG_RUNTIME_DIR is invalid or not set` several times while adapters are enumerated on a
/// machine without a display server; that is noise, not an error, so stderr is silenced for
/// the probe and the outcome is said once by the caller.
fn wgpu() -> &'static std::result::Result<Gpu, String> {
    static GPU: OnceLock<std::result::Result<Gpu, String>> = OnceLock::new();
    GPU.get_or_init(|| {
        let quiet = gag::Gag::stderr().ok();
        let init = Device::wgpu_options().init_with_setup();
        drop(quiet);
        let (device, setup) = init.map_err(|e| format!("{e}"))?;
        let info = setup.adapter.get_info();
        let real_gpu = !matches!(info.device_type, burn::tensor::wgpu::wgpu::DeviceType::Cpu);
        let description = format!(
            "gpu: {} ({:?}, {:?}, driver {})",
            info.name, info.backend, info.device_type, info.driver
        );
        Ok(Gpu { device, description, real_gpu })
    })
}

/// "cpu: MODEL, N threads, kernels ISA" (the CPU model from /proc/cpuinfo where it exists).
fn cpu_description() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let isa = crate::cpu::Isa::detect().name();
    format!("cpu: {model}, {threads} threads, kernels {isa} (training: burn flex)")
}

/// Resolves a [`DeviceChoice`].
pub fn select(choice: DeviceChoice) -> Result<SelectedDevice> {
    let cpu = |reason: String| SelectedDevice {
        device: Device::flex(),
        description: cpu_description(),
        reason,
        is_gpu: false,
    };
    let gpu = |g: &Gpu, reason: &str| SelectedDevice {
        device: g.device.clone(),
        description: g.description.clone(),
        reason: reason.into(),
        is_gpu: true,
    };
    match choice {
        DeviceChoice::Cpu => Ok(cpu("asked for the CPU".into())),
        DeviceChoice::Gpu => match wgpu() {
            Ok(g) => Ok(gpu(g, "asked for the GPU")),
            Err(e) => Err(ModelError::Device(format!("no wgpu adapter could be initialized: {e}"))),
        },
        DeviceChoice::Auto => match wgpu() {
            Ok(g) if g.real_gpu => Ok(gpu(g, "auto: a hardware GPU adapter was found")),
            Ok(g) => Ok(cpu(format!(
                "auto: the only wgpu adapter is a software one ({}), slower than flex",
                g.description.trim_start_matches("gpu: ")
            ))),
            Err(_) => Ok(cpu("auto: no wgpu adapter".into())),
        },
    }
}
