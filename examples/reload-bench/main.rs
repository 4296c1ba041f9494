//! `reload-bench`: how long hot reload takes, and what the compiled-artifact cache saves.
//!
//! Run it with a release build (debug builds compile wasm ~40x slower):
//!
//! ```text
//! cargo xtask build-plugins
//! cargo run --release --example reload-bench
//! ```
//!
//! 1. Per plugin in `target/plugins` (the Rust examples and fixtures, the Python and
//!    JavaScript examples): compiling the component vs loading the artifact cached by an
//!    earlier compile (median of 5 each), and the ratio.
//! 2. Gateway start-up with those plugins, with an empty artifact cache and a warm one.
//! 3. Swap latency: a gateway serving a plugin directory; from the atomic rename of a new
//!    version to the moment new calls get it, for 20 swaps, at two debounce settings. The
//!    debounce is a floor by design; the rest is the reload's own work.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis::Portcullis;
use portcullis::config::Config;
use portcullis::sandbox::{Sandbox, SandboxConfig};
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn compile_vs_cache(scratch: &Path) -> anyhow::Result<()> {
    println!("## Compile vs cached load (median of 5)\n");
    println!("| plugin | size KiB | compile ms | cached load ms | compile / cached |");
    println!("|---|---|---|---|---|");
    let cold = Sandbox::new(&SandboxConfig::default())?;
    let cache = scratch.join("artifacts");
    let warm = Sandbox::new(&SandboxConfig {
        cache_dir: Some(cache),
        ..SandboxConfig::default()
    })?;
    // The Rust plugins, then one plugin per script SDK (a whole interpreter each).
    for name in [
        "hello",
        "notes",
        "conformance",
        "probe",
        "py-words",
        "js-words",
    ] {
        let path = root().join(format!("target/plugins/{name}.wasm"));
        let bytes = std::fs::read(&path)?;
        warm.compile(&path, &bytes)?; // fills the cache
        let mut compile = Vec::new();
        let mut cached = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            cold.compile(&path, &bytes)?;
            compile.push(t.elapsed());
            let t = Instant::now();
            let code = warm.compile(&path, &bytes)?;
            cached.push(t.elapsed());
            assert!(code.from_cache());
        }
        let (c, w) = (median(compile), median(cached));
        println!(
            "| {name} | {} | {:.1} | {:.2} | {:.0}x |",
            bytes.len() / 1024,
            ms(c),
            ms(w),
            c.as_secs_f64() / w.as_secs_f64()
        );
    }
    Ok(())
}

/// Gateway start-up with the example plugins: an empty artifact cache vs a warm one.
async fn startup(scratch: &Path) -> anyhow::Result<()> {
    let plugins: Vec<String> = ["hello", "notes", "conformance", "probe"]
        .iter()
        .map(|n| {
            format!(
                "{:?}",
                root()
                    .join(format!("target/plugins/{n}.wasm"))
                    .display()
                    .to_string()
            )
        })
        .collect();
    let cache = scratch.join("startup-cache");
    let start = || async {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[sandbox]\nwatch = false\ncache_dir = {:?}\n\
             [auth]\nmode = \"none\"\n[[tenant]]\nid = \"t\"\nplugins = [{}]\n",
            cache.display().to_string(),
            plugins.join(", ")
        );
        let config = Config::parse(&text, &scratch.join("startup.toml"), scratch)?;
        let t = Instant::now();
        let gateway = Portcullis::start(config).await?;
        let took = t.elapsed();
        gateway.shutdown_token().cancel();
        anyhow::Ok(took)
    };
    let cold = start().await?;
    let mut warm = Vec::new();
    for _ in 0..5 {
        warm.push(start().await?);
    }
    let warm = median(warm);
    println!("\n## Start-up with {} plugins\n", plugins.len());
    println!("| artifact cache | start ms | cold / warm |");
    println!("|---|---|---|");
    println!("| empty (compiles) | {:.0} | 1x |", ms(cold));
    println!(
        "| warm (median of 5) | {:.0} | {:.1}x |",
        ms(warm),
        cold.as_secs_f64() / warm.as_secs_f64()
    );
    Ok(())
}

async fn swap_latency(scratch: &Path, debounce_ms: u64) -> anyhow::Result<()> {
    let dir = scratch.join(format!("plugins-{debounce_ms}"));
    std::fs::create_dir_all(&dir)?;
    let versions: Vec<Vec<u8>> = ["version-one", "version-two"]
        .iter()
        .map(|n| std::fs::read(root().join(format!("target/plugins/{n}.wasm"))))
        .collect::<Result<_, _>>()?;
    let target = dir.join("versioned.wasm");
    std::fs::write(&target, &versions[0])?;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[sandbox]\nreload_debounce_ms = {debounce_ms}\ncache_dir = {:?}\n\
         [auth]\nmode = \"none\"\n[[tenant]]\nid = \"t\"\nplugins = [{:?}]\n",
        scratch.join("artifacts").display().to_string(),
        dir.display().to_string()
    );
    let config = Config::parse(&text, &scratch.join("bench.toml"), scratch)?;
    let gateway = Portcullis::start(config).await?;
    let tenant = gateway.tenant("t").expect("tenant t");
    let mut samples = Vec::new();
    for i in 1..=20 {
        let bytes = &versions[i % 2];
        let want = hex::encode(Sha256::digest(bytes));
        let tmp = dir.join("versioned.partial");
        std::fs::write(&tmp, bytes)?;
        let started = Instant::now();
        std::fs::rename(&tmp, &target)?;
        loop {
            let serving = tenant
                .plugins
                .catalog()
                .tool("versioned.which")
                .map(|(p, _)| p.sha256.clone());
            if serving.as_deref() == Some(want.as_str()) {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "swap {i} never served"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    let debounce = Duration::from_millis(debounce_ms);
    let p50 = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    println!(
        "| {debounce_ms} | {:.0} | {:.0} | {:.0} | {:.2}x |",
        ms(p50),
        ms(max),
        ms(p50.saturating_sub(debounce)),
        p50.as_secs_f64() / debounce.as_secs_f64()
    );
    gateway.shutdown_token().cancel();
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let scratch = root().join("target/bench-reload");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    println!(
        "# Reload benchmark ({} build)\n",
        if cfg!(debug_assertions) {
            "DEBUG"
        } else {
            "release"
        }
    );
    compile_vs_cache(&scratch)?;
    startup(&scratch).await?;
    println!("\n## Swap latency: rename of a new version → new calls get it (20 swaps)\n");
    println!("| debounce ms | p50 ms | max ms | p50 − debounce ms | p50 / debounce |");
    println!("|---|---|---|---|---|");
    for debounce in [300, 50] {
        swap_latency(&scratch, debounce).await?;
    }
    Ok(())
}
