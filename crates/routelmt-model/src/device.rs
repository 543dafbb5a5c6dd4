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
pub enum DeviceChoice {
    /// A GPU adapter if one exists, else the CPU.
    #[default]
    Auto,
    /// burn flex on the CPU.
    Cpu,
    /// wgpu, whatever adapter it finds (fails if none).
    Gpu,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            o => Err(format!("unknown device '{o}' (expected auto, cpu or gpu)")),
        }
    }
}

/// A device and a human description of it ("cpu (flex)", "gpu: llvmpipe ... (Vulkan, Cpu)").
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    /// The burn device.
    pub device: Device,
    /// What ran, for logs and reports.
    pub description: String,
    /// True for wgpu.
    pub is_gpu: bool,
}

struct Gpu {
    device: Device,
    description: String,
    real_gpu: bool,
}

fn wgpu() -> &'static std::result::Result<Gpu, String> {
    static GPU: OnceLock<std::result::Result<Gpu, String>> = OnceLock::new();
    GPU.get_or_init(|| {
        let (device, setup) =
            Device::wgpu_options().init_with_setup().map_err(|e| format!("{e}"))?;
        let info = setup.adapter.get_info();
        let real_gpu = !matches!(info.device_type, burn::tensor::wgpu::wgpu::DeviceType::Cpu);
        let description = format!(
            "gpu: {} ({:?}, {:?}, driver {})",
            info.name, info.backend, info.device_type, info.driver
        );
        Ok(Gpu { device, description, real_gpu })
    })
}

/// Resolves a [`DeviceChoice`].
pub fn select(choice: DeviceChoice) -> Result<SelectedDevice> {
    let cpu = || SelectedDevice {
        device: Device::flex(),
        description: "cpu (burn flex)".into(),
        is_gpu: false,
    };
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Gpu => match wgpu() {
            Ok(g) => Ok(SelectedDevice {
                device: g.device.clone(),
                description: g.description.clone(),
                is_gpu: true,
            }),
            Err(e) => Err(ModelError::Device(format!("no wgpu adapter could be initialized: {e}"))),
        },
        DeviceChoice::Auto => match wgpu() {
            Ok(g) if g.real_gpu => Ok(SelectedDevice {
                device: g.device.clone(),
                description: g.description.clone(),
                is_gpu: true,
            }),
            _ => Ok(cpu()),
        },
    }
}
