//! `routelmt serve`: the routing gateway (crates/routelmt-serve), configured by a TOML file,
//! flags and environment; `--check` validates the configuration and exits.

use anyhow::{Result, anyhow, bail};
use routelmt_serve::{ServeArgs, ServeConfig};

/// `routelmt serve`.
pub fn serve(a: ServeArgs) -> Result<()> {
    let cfg = ServeConfig::resolve(&a).map_err(|e| anyhow!(e))?;
    if a.check {
        cfg.check().map_err(|e| anyhow!(e))?;
        // Cheap checks that need the files but not the weights: the model's config and the
        // router's base fingerprint.
        let model = cfg.model.as_ref().expect("checked");
        let router = cfg.router.as_ref().expect("checked");
        let config = routelmt_model::hf::read_config(model)?;
        let file = router.join(routelmt_model::router::ROUTER_JSON);
        let bytes = std::fs::read(&file).map_err(|e| anyhow!("{}: {e}", file.display()))?;
        let rc = routelmt_model::RouterConfig::from_json(&bytes, &file.display().to_string())?;
        if rc.base_fingerprint != config.fingerprint() {
            bail!(
                "router: {} was trained on another base model (fingerprint {} != {})",
                router.display(),
                rc.base_fingerprint,
                config.fingerprint()
            );
        }
        println!(
            "config ok: listen {}, model {}, router {}",
            cfg.listen,
            model.display(),
            router.display()
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("tokio runtime: {e}"))?;
    let served = runtime.block_on(routelmt_serve::serve(cfg)).map_err(|e| anyhow!(e));
    // Whatever is still running (a stream cut off at the drain deadline, a model still
    // loading) does not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    served
}
