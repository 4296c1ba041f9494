//! The benchmark's output: JSON (everything measured), a Markdown table per mode with ratios
//! to the native baseline of the same run, and an SVG plot of throughput and p99 latency
//! against concurrency.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::json;

use crate::load::Measured;
use crate::systems::OPEN_LOOP_CLIENTS;
use crate::{HALF_LOAD_REFERENCE, Run, Settings};

/// The machine's cores (not `available_parallelism`, which says 1 in this process: it is
/// pinned to core 0).
pub(crate) fn machine_cores() -> usize {
    std::fs::read_to_string("/proc/cpuinfo").map_or(0, |c| {
        c.lines().filter(|l| l.starts_with("processor")).count()
    })
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    json!({
        "cpu": cpu,
        "cores": machine_cores(),
        "kernel": kernel,
        "pinning": "server: taskset -c 1, one worker thread; load generator: taskset -c 0, one thread",
    })
}

/// `system`'s point for `mode` at `concurrency` (the native baseline, the ceiling).
fn point<'r>(
    runs: &'r [Run],
    system: &str,
    mode: &str,
    concurrency: usize,
) -> Option<&'r Measured> {
    runs.iter()
        .find(|r| r.system == system && r.mode == mode)?
        .points
        .iter()
        .find(|p| p.concurrency == concurrency && p.req_per_s > 0.0)
}

/// `f` of a point as text, or a dash.
fn show(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.filter(|v| v.is_finite()).map_or("–".to_string(), f)
}

fn markdown(s: &Settings, runs: &[Run]) -> String {
    let mut md = String::new();
    let m = machine();
    let _ = writeln!(
        md,
        "# Benchmark results\n\nMachine: {} ({} cores), Linux {}. {}.\n\
         Each point: {:.1} s warm-up, {:.1} s measured, closed loop (each client sends its next \
         request when the answer arrives). Ratio = req/s ÷ the native rmcp server's req/s at the \
         same mode and concurrency in this run; of ceiling = req/s ÷ the ceiling's (a bare hyper \
         server answering the same bytes, no MCP library). Server CPU = the server process's CPU time (all \
         threads) per answered request; CPU ratio = native's CPU per request ÷ the system's \
         (what the req/s ratio would be if both servers saturated their core). Core % = the \
         share of its core each side used; a load generator near 100 % limited the point.\n",
        m["cpu"].as_str().unwrap_or_default(),
        m["cores"],
        m["kernel"].as_str().unwrap_or_default(),
        m["pinning"].as_str().unwrap_or_default(),
        s.warmup.as_secs_f64(),
        s.duration.as_secs_f64(),
    );
    for mode in ["stateless", "session"] {
        let _ = writeln!(
            md,
            "## {mode}\n\n| system | concurrency | req/s | ratio to native | of ceiling | p50 µs | p99 µs | server CPU µs/req | CPU ratio | server core % | load generator core % | errors | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in runs.iter().filter(|r| r.mode == mode) {
            for p in &r.points {
                let base = point(runs, "native", mode, p.concurrency);
                let ratio = show(base.map(|b| p.req_per_s / b.req_per_s), |v| {
                    format!("{v:.2}×")
                });
                let ceiling = point(runs, "ceiling", mode, p.concurrency);
                let of_ceiling = show(ceiling.map(|c| p.req_per_s / c.req_per_s), |v| {
                    format!("{v:.2}")
                });
                let cpu_ratio = show(
                    base.and_then(|b| b.server_cpu_us_per_req)
                        .zip(p.server_cpu_us_per_req)
                        .map(|(b, s)| b / s),
                    |v| format!("{v:.2}×"),
                );
                let rss = show(r.peak_rss_kib.map(|k| k as f64 / 1024.0), |v| {
                    format!("{v:.1}")
                });
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {ratio} | {of_ceiling} | {:.0} | {:.0} | {} | {cpu_ratio} | {} | {} | {} | {rss} |",
                    r.system,
                    p.concurrency,
                    p.req_per_s,
                    p.p50_us,
                    p.p99_us,
                    show(p.server_cpu_us_per_req, |v| format!("{v:.0}")),
                    show(p.server_cpu, |v| format!("{:.0}", v * 100.0)),
                    show(p.client_cpu, |v| format!("{:.0}", v * 100.0)),
                    p.errors,
                );
            }
        }
        md.push('\n');
        let _ = writeln!(
            md,
            "Latency when not saturated: every system offered the same rate, half of \
             {HALF_LOAD_REFERENCE}'s peak (open loop: arrivals paced to the microsecond, handed \
             to whichever of {OPEN_LOOP_CLIENTS} clients is free; latency counts from when a request was due):\n\n\
             Requests not started when the window closed are counted as unserved, not timed.\n\n\
             | system | offered req/s | answered req/s | unserved | p50 µs | p99 µs | p99 − native p99 µs | server CPU µs/req |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        let native_p99 = runs
            .iter()
            .find(|r| r.system == "native" && r.mode == mode)
            .and_then(|r| r.half_load.as_ref())
            .map(|h| h.p99_us);
        for r in runs.iter().filter(|r| r.mode == mode) {
            if let Some(h) = &r.half_load {
                let delta =
                    native_p99.map_or("–".to_string(), |n| format!("{:+.0}", h.p99_us - n));
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {} | {} |",
                    r.system,
                    h.offered_per_s,
                    h.req_per_s,
                    h.unserved,
                    h.p50_us,
                    h.p99_us,
                    delta,
                    show(h.server_cpu_us_per_req, |v| format!("{v:.0}")),
                );
            }
        }
        md.push('\n');
    }
    md
}

/// Reads one plotted value off a point.
type Metric = fn(&Measured) -> f64;

const COLORS: [&str; 6] = [
    "#222222", "#1f77b4", "#2ca02c", "#98df8a", "#d62728", "#9467bd",
];

/// Two panels (req/s, p99 µs) against concurrency, one line per system, for `mode`; log
/// scale on the y axes so the SDK servers stay visible next to the Rust ones.
fn svg(runs: &[Run], mode: &str) -> String {
    let runs: Vec<&Run> = runs.iter().filter(|r| r.mode == mode).collect();
    let concurrencies: Vec<usize> = runs
        .first()
        .map(|r| r.points.iter().map(|p| p.concurrency).collect())
        .unwrap_or_default();
    let (w, h, pad) = (460.0, 300.0, 60.0);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11">"#,
        2.0 * w + 40.0,
        h + 120.0
    );
    let _ = write!(
        out,
        r#"<text x="10" y="18" font-size="14">tools/call echo, {mode} — throughput and p99 latency against concurrency (log y)</text>"#
    );
    let panels: [(&str, Metric); 2] = [("req/s", |p| p.req_per_s), ("p99 µs", |p| p.p99_us)];
    for (panel, (label, value)) in panels.iter().enumerate() {
        let x0 = 20.0 + panel as f64 * (w + 20.0);
        let y0 = 30.0;
        let values: Vec<f64> = runs
            .iter()
            .flat_map(|r| r.points.iter().map(value))
            .filter(|v| *v > 0.0)
            .collect();
        let (lo, hi) = values
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        if values.is_empty() || concurrencies.is_empty() {
            continue;
        }
        let (lo, hi) = (
            lo.log10().floor(),
            hi.log10().ceil().max(lo.log10().floor() + 1.0),
        );
        let sx =
            |i: usize| x0 + pad + (w - pad - 10.0) * (i as f64 + 0.5) / concurrencies.len() as f64;
        let sy = |v: f64| y0 + (h - 30.0) * (1.0 - (v.log10() - lo) / (hi - lo));
        let _ = write!(
            out,
            r#"<rect x="{}" y="{y0}" width="{}" height="{}" fill="none" stroke="silver"/><text x="{}" y="{}">{label}</text>"#,
            x0 + pad,
            w - pad - 10.0,
            h - 30.0,
            x0 + 4.0,
            y0 + 12.0
        );
        let mut decade = lo;
        while decade <= hi {
            let v = 10f64.powf(decade);
            let _ = write!(
                out,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text><line x1="{}" x2="{}" y1="{y}" y2="{y}" stroke="gainsboro"/>"#,
                x0 + pad - 4.0,
                sy(v) + 4.0,
                if v >= 1000.0 {
                    format!("{}k", v / 1000.0)
                } else {
                    format!("{v}")
                },
                x0 + pad,
                x0 + w - 10.0,
                y = sy(v)
            );
            decade += 1.0;
        }
        for (i, c) in concurrencies.iter().enumerate() {
            let _ = write!(
                out,
                r#"<text x="{}" y="{}" text-anchor="middle">c={c}</text>"#,
                sx(i),
                y0 + h - 14.0
            );
        }
        for (k, r) in runs.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let pts: Vec<String> = r
                .points
                .iter()
                .enumerate()
                .filter(|(_, p)| value(p) > 0.0)
                .map(|(i, p)| format!("{:.1},{:.1}", sx(i), sy(value(p))))
                .collect();
            let _ = write!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                pts.join(" ")
            );
        }
    }
    for (k, r) in runs.iter().enumerate() {
        let _ = write!(
            out,
            r#"<rect x="{}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            20.0 + (k % 3) as f64 * 200.0,
            h + 50.0 + (k / 3) as f64 * 20.0,
            COLORS[k % COLORS.len()],
            36.0 + (k % 3) as f64 * 200.0,
            h + 60.0 + (k / 3) as f64 * 20.0,
            r.system
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Write `results.json`, `results.md` and one plot per mode; returns the paths.
pub(crate) fn write(s: &Settings, runs: &[Run]) -> anyhow::Result<Vec<String>> {
    let json_path = s.out.join("results.json");
    let doc = json!({
        "machine": machine(),
        "warmup_secs": s.warmup.as_secs_f64(),
        "duration_secs": s.duration.as_secs_f64(),
        "smoke": s.smoke,
        "runs": runs,
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)?)?;
    let md_path = s.out.join("results.md");
    std::fs::write(&md_path, markdown(s, runs))?;
    let mut written: Vec<PathBuf> = vec![json_path, md_path];
    for mode in ["stateless", "session"] {
        let p = s.out.join(format!("throughput-{mode}.svg"));
        std::fs::write(&p, svg(runs, mode))?;
        written.push(p);
    }
    Ok(written.iter().map(|p| p.display().to_string()).collect())
}
