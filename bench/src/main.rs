//! `portcullis-bench`: Portcullis side by side with a native rmcp server and the TypeScript
//! and Python SDK servers, in one run on one machine (`cargo xtask bench`).
//!
//! Every server gets the same workload (`tools/call echo` with a small argument, stateless
//! and in 2025 sessions, at several concurrencies, warm-up first) and the same core budget:
//! servers run under `taskset -c 1` with one worker thread, the load generator (this
//! process, one thread) under `taskset -c 0`. Ratios are taken against the native server
//! measured in the same run, both for throughput and for the server's CPU time per request
//! (read from `/proc`, so a point where the load generator rather than the server was the
//! limit still compares the servers' cost). After the closed-loop phase every system of a
//! mode is offered the same open-loop rate, half of Portcullis's (JWT cached) peak, for
//! latency when not saturated. Results go to `<out>/results.json`, `<out>/results.md` and
//! `<out>/throughput-{stateless,session}.svg`.
//!
//! `--smoke` runs every system for a moment at concurrency 1 and fails unless each one starts
//! and answers correctly (`cargo xtask test` runs it so the harness cannot rot).

mod load;
mod report;
mod systems;
mod wrk;

use std::path::PathBuf;
use std::time::Duration;

use load::Measured;
use serde::Serialize;

/// Command-line settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) smoke: bool,
    pub(crate) root: PathBuf,
    pub(crate) bin_dir: PathBuf,
    pub(crate) out: PathBuf,
    pub(crate) concurrency: Vec<usize>,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    pub(crate) only: Option<Vec<String>>,
    /// Also measure every stateless system with `wrk` (the independent check).
    pub(crate) wrk: bool,
}

impl Settings {
    fn parse() -> anyhow::Result<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut s = Self {
            smoke: false,
            bin_dir: root.join("target/release"),
            out: root.join("target/bench"),
            root,
            concurrency: vec![1, 8, 32],
            // Short enough that a cold `cargo xtask bench` stays under 15 minutes on two cores
            // (48 points); long enough for tens of thousands of samples per Rust point.
            warmup: Duration::from_millis(500),
            duration: Duration::from_millis(2500),
            only: None,
            wrk: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
            };
            match a.as_str() {
                "--smoke" => s.smoke = true,
                "--wrk" => s.wrk = true,
                "--bin-dir" => s.bin_dir = PathBuf::from(value()?),
                "--out" => s.out = PathBuf::from(value()?),
                "--concurrency" => {
                    s.concurrency = value()?
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()?
                }
                "--duration-secs" => s.duration = Duration::from_secs_f64(value()?.parse()?),
                "--warmup-secs" => s.warmup = Duration::from_secs_f64(value()?.parse()?),
                "--only" => s.only = Some(value()?.split(',').map(str::to_string).collect()),
                "--help" | "-h" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => anyhow::bail!("unknown argument {other}\n{USAGE}"),
            }
        }
        if s.smoke {
            s.concurrency = vec![1, 4];
            s.warmup = Duration::from_millis(200);
            s.duration = Duration::from_millis(500);
        }
        Ok(s)
    }
}

/// One system in one mode: what it sustained at each concurrency, and its peak memory.
#[derive(Debug, Serialize)]
pub(crate) struct Run {
    pub(crate) system: String,
    pub(crate) mode: String,
    pub(crate) protocol: load::Protocol,
    pub(crate) points: Vec<Measured>,
    /// Open loop at half the best req/s of `points`: the latency of a server not saturated.
    pub(crate) half_load: Option<Measured>,
    pub(crate) peak_rss_kib: Option<u64>,
}

const USAGE: &str = "usage: portcullis-bench [--smoke] [--wrk] [--bin-dir DIR] [--out DIR] \
    [--concurrency 1,8,32] [--duration-secs 2.5] [--warmup-secs 0.5] \
    [--only ceiling,native,portcullis,portcullis-jwt,portcullis-jwt-nocache,portcullis-jwt-cluster,typescript-sdk,python-sdk]";

/// The system whose half-peak rate every system is offered in the open-loop phase.
pub(crate) const HALF_LOAD_REFERENCE: &str = "portcullis-jwt";

/// Record a failed point: errors, or no answer at all.
fn check(failures: &mut Vec<String>, run: &Run, point: &str, m: &Measured) {
    if m.errors > 0 || m.requests == 0 {
        failures.push(format!(
            "{} {} {point}: {} errors, {} requests ({})",
            run.system,
            run.mode,
            m.errors,
            m.requests,
            m.first_error.as_deref().unwrap_or("no answer")
        ));
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse()?;
    std::fs::create_dir_all(&settings.out)?;
    let issuer = systems::Issuer::start(&settings.root).await?;
    let mut live = Vec::new();
    let mut failures = Vec::new();
    // Phase 1: every system, closed loop; each stays up (idle) for phase 2.
    for system in systems::all() {
        if let Some(only) = &settings.only
            && !only.iter().any(|o| o == system.name)
        {
            continue;
        }
        for mode in [systems::Mode::Stateless, systems::Mode::Session] {
            eprintln!("bench: {} ({})", system.name, mode.name());
            match system.measure(&settings, &issuer, mode).await {
                Ok(l) => {
                    for p in &l.run.points {
                        eprintln!(
                            "bench:   c={:<3} {:>9.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  server CPU {:>5.0} µs/req ({:.0}% of its core)  errors {}",
                            p.concurrency,
                            p.req_per_s,
                            p.p50_us,
                            p.p99_us,
                            p.server_cpu_us_per_req.unwrap_or(f64::NAN),
                            p.server_cpu.unwrap_or(f64::NAN) * 100.0,
                            p.errors
                        );
                        check(&mut failures, &l.run, &format!("c={}", p.concurrency), p);
                    }
                    live.push(l);
                }
                Err(e) => failures.push(format!("{} {}: {e:#}", system.name, mode.name())),
            }
        }
    }
    // Phase 2: latency when not saturated. Every system of a mode is offered the same rate,
    // half the peak of the reference system (Portcullis, JWT cached) — or of its own peak if
    // that system was not measured.
    for mode in [systems::Mode::Stateless, systems::Mode::Session] {
        let reference = live
            .iter()
            .find(|l| l.run.mode == mode.name() && l.run.system == HALF_LOAD_REFERENCE)
            .map(systems::Live::peak);
        for l in live.iter_mut().filter(|l| l.run.mode == mode.name()) {
            let rate = reference.unwrap_or_else(|| l.peak()) / 2.0;
            if rate <= 0.0 {
                continue;
            }
            l.half_load(&settings, rate).await;
            if let Some(h) = &l.run.half_load {
                eprintln!(
                    "bench: {} ({}) open loop at {rate:.0} req/s: p50 {:.0} µs  p99 {:.0} µs  errors {}",
                    l.run.system,
                    mode.name(),
                    h.p50_us,
                    h.p99_us,
                    h.errors
                );
                check(&mut failures, &l.run, "half load", h);
            }
        }
    }
    let wrk = if settings.wrk {
        wrk::markdown(&wrk::run(&settings, &live).await?)
    } else {
        String::new()
    };
    let runs: Vec<Run> = live.into_iter().map(systems::Live::finish).collect();
    let mut written = report::write(&settings, &runs)?;
    if settings.wrk {
        let path = settings.out.join("wrk.md");
        std::fs::write(&path, wrk)?;
        written.push(path.display().to_string());
    }
    eprintln!("bench: wrote {}", written.join(", "));
    if !failures.is_empty() {
        anyhow::bail!("{} failures:\n  {}", failures.len(), failures.join("\n  "));
    }
    Ok(())
}
