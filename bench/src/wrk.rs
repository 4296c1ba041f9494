//! The independent check: `wrk` (Debian's, one thread, pinned with this process to core 0)
//! against each stateless system already measured, with `bench/wrk/stateless-call.lua` sending
//! the same `tools/call echo` body and headers as the harness's own load generator. The
//! req/s ratios it reports should match the harness's (`portcullis-bench --wrk`).

use std::fmt::Write as _;
use std::time::Duration;

use crate::Settings;
use crate::systems::Live;

/// One wrk measurement.
pub(crate) struct Point {
    pub(crate) system: String,
    pub(crate) concurrency: usize,
    pub(crate) req_per_s: f64,
    pub(crate) bad: u64,
    pub(crate) latency: String,
}

/// wrk against every stateless system in `live`, at each of the settings' concurrencies.
pub(crate) async fn run(s: &Settings, live: &[Live]) -> anyhow::Result<Vec<Point>> {
    let script = s.root.join("bench/wrk/stateless-call.lua");
    let secs = s.duration.max(Duration::from_secs(1)).as_secs().to_string();
    let mut points = Vec::new();
    for l in live.iter().filter(|l| l.run.mode == "stateless") {
        for &c in &s.concurrency {
            let out = tokio::process::Command::new("wrk")
                .args([
                    "-t1",
                    &format!("-c{c}"),
                    &format!("-d{secs}s"),
                    "--latency",
                    "-s",
                ])
                .arg(&script)
                .arg(l.url())
                .env("BENCH_AUTHORIZATION", l.authorization().unwrap_or_default())
                .output()
                .await
                .map_err(|e| anyhow::anyhow!("cannot run wrk (apt-get install wrk): {e}"))?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let field = |prefix: &str| {
                text.lines()
                    .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
            };
            let req_per_s = field("Requests/sec:")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("wrk printed no rate: {text}"))?;
            let bad = field("bad answers:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX);
            let latency = ["50%", "99%"]
                .iter()
                .filter_map(|p| field(p).map(|v| format!("p{} {v}", &p[..2])))
                .collect::<Vec<_>>()
                .join(", ");
            eprintln!(
                "bench: wrk {} c={c}: {req_per_s:.0} req/s, {latency}, bad answers {bad}",
                l.run.system
            );
            points.push(Point {
                system: l.run.system.clone(),
                concurrency: c,
                req_per_s,
                bad,
                latency,
            });
        }
    }
    Ok(points)
}

/// The wrk table, each rate also as a ratio to native's and a share of the ceiling's.
pub(crate) fn markdown(points: &[Point]) -> String {
    let mut md = String::from(
        "## wrk (independent load generator), stateless\n\n\
         | system | concurrency | req/s | ratio to native | of ceiling | latency | bad answers |\n\
         |---|---:|---:|---:|---:|---|---:|\n",
    );
    let rate = |system: &str, c: usize| {
        points
            .iter()
            .find(|p| p.system == system && p.concurrency == c)
            .map(|p| p.req_per_s)
    };
    for p in points {
        let ratio = |base: Option<f64>| {
            base.map_or("–".to_string(), |b| format!("{:.2}", p.req_per_s / b))
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {}× | {} | {} | {} |",
            p.system,
            p.concurrency,
            p.req_per_s,
            ratio(rate("native", p.concurrency)),
            ratio(rate("ceiling", p.concurrency)),
            p.latency,
            p.bad
        );
    }
    md
}
