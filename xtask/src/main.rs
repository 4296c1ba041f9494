//! Project tasks. Run with `cargo xtask <task>`:
//!
//! * `deps`: check the host's module dependency rule (also part of `test`).
//! * `build-plugins`: install the `wasm32-wasip2` target if missing, build the guest plugins in
//!   `plugins/` and copy the components to `target/plugins/<name>.wasm` (with the policies a crate
//!   suggests, its `policies.cedar`, as `<name>.cedar`).
//! * `run`: build the plugins, then run the gateway with `examples/quickstart.toml`.
//! * `test`: check formatting, the host's module dependency rule (the table in
//!   `host/src/lib.rs`) and clippy (`-D warnings`), build the plugins, install the pinned
//!   test peers (Node 22, the conformance suites, the TypeScript SDK, oidc-provider; the Python
//!   SDK in `tests/.venv`) under `tests/`, then run
//!   every Rust test, including the integration tests that drive the real peers, and a smoke
//!   run of the benchmark (every system starts and answers correctly).
//! * `image`: the gateway's container image, assembled offline with `buildah` (see `image.rs`).
//! * `bench`: the side-by-side benchmark in release builds (`bench/`), results in
//!   `target/bench/` (JSON, Markdown, SVG). Extra arguments go to `portcullis-bench`.
//!
//! It only shells out to cargo, rustup and npm; it has no dependencies of its own so it builds
//! in seconds on a fresh machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

mod deps;
mod image;

fn main() {
    if let Err(e) = task() {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn task() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    match args.first().map(String::as_str) {
        Some("build-plugins") => build_plugins(&root, Scripts::Required),
        Some("deps") => deps::check(&root.join("host/src")),
        Some("run") => {
            // The quickstart serves a Rust plugin: only Rust is needed to run it.
            build_plugins(&root, Scripts::IfInstalled)?;
            let config = args
                .get(1)
                .cloned()
                .unwrap_or_else(|| "examples/quickstart.toml".into());
            run_gateway(&root, &config)
        }
        Some("test") => {
            // Cheap checks first, so style problems fail in seconds.
            run(Command::new(cargo())
                .current_dir(&root)
                .args(["fmt", "--all", "--", "--check"]))?;
            run(Command::new(cargo())
                .current_dir(root.join("plugins"))
                .args(["fmt", "--all", "--", "--check"]))?;
            run(Command::new(cargo())
                .current_dir(root.join("sdk/rust"))
                .args(["fmt", "--", "--check"]))?;
            deps::check(&root.join("host/src"))?;
            check_vendored_wit(&root)?;
            run(Command::new(cargo()).current_dir(&root).args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))?;
            build_plugins(&root, Scripts::Required)?;
            test_guest_code(&root)?;
            install_test_peers(&root, &NPM_PEERS)?;
            install_python_peers(&root)?;
            install_debian_peers(&DEBIAN_PEERS)?;
            // Every binary the tests start (the gateway, the notes demo's API), built with
            // the feature resolution `cargo test --workspace` uses, so the test run reuses it.
            run(Command::new(cargo()).current_dir(&root).args([
                "build",
                "--workspace",
                "--tests",
                "--bins",
            ]))?;
            let mut cmd = Command::new(cargo());
            cmd.current_dir(&root)
                .args(["test", "--workspace"])
                .args(&args[1..]);
            run(&mut cmd)?;
            if args.len() > 1 {
                // A filtered test run skips the benchmark and fuzz smokes.
                return Ok(());
            }
            // Each fuzz target, briefly, from its committed corpus, so none can rot (an
            // unoptimised build: it compiles in a fraction of the time, and 5 s need no speed).
            fuzz(
                &root,
                &["--dev".into(), "--secs".into(), FUZZ_SMOKE_SECS.to_string()],
            )?;
            // The benchmark harness, briefly, on the debug builds the tests just made.
            build_bench_binaries(&root, false)?;
            run(
                pinned_to_core_0(&root.join("target/debug/portcullis-bench")).args([
                    "--smoke",
                    "--bin-dir",
                    &root.join("target/debug").display().to_string(),
                    "--out",
                    &root.join("target/bench-smoke").display().to_string(),
                ]),
            )
        }
        Some("bench") => {
            build_plugins(&root, Scripts::Required)?;
            // Only the TypeScript SDK and Node 22 (the conformance suites are not needed).
            install_test_peers(&root, &NPM_PEERS[..1])?;
            install_python_peers(&root)?;
            build_bench_binaries(&root, true)?;
            run(pinned_to_core_0(&root.join("target/release/portcullis-bench")).args(&args[1..]))?;
            // The per-request costs, in isolation (criterion, quick mode; already built).
            run(Command::new(cargo()).current_dir(&root).args([
                "bench",
                // The same package set as the build, so the same features: nothing rebuilds.
                "-p",
                "portcullis",
                "-p",
                "portcullis-bench",
                "--bench",
                "micro",
                "--",
                "--quick",
            ]))
        }
        Some("fuzz") => {
            build_plugins(&root, Scripts::Required)?;
            fuzz(&root, &args[1..])
        }
        Some("image") => image::build(&root, &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <build-plugins | deps | run [CONFIG] | test [CARGO TEST ARGS] | bench [BENCH ARGS] | fuzz [--dev] [--secs N] [TARGET...] | image [--debug] [--tag NAME] [--store DIR]>"
            );
            std::process::exit(2);
        }
    }
}

/// The fuzz targets in `fuzz/` (cargo-fuzz on the preinstalled nightly toolchain).
const FUZZ_TARGETS: &[&str] = &[
    "front",
    "config",
    "egress_path",
    "jwt",
    "request_state",
    "plugin_output",
    "plugin_schema",
];

/// How long `cargo xtask test` runs each fuzz target.
const FUZZ_SMOKE_SECS: u64 = 5;

/// The cargo-fuzz release the targets are built with, installed if missing.
const CARGO_FUZZ_VERSION: &str = "0.13.1";

/// Install the pinned cargo-fuzz if `cargo fuzz` is missing or another version, and check the
/// nightly toolchain it needs (preinstalled on the machine image; the product builds on stable).
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let nightly = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("running rustup")?;
    if !String::from_utf8_lossy(&nightly.stdout)
        .lines()
        .any(|l| l.starts_with("nightly"))
    {
        bail!(
            "fuzzing needs a nightly toolchain: `rustup toolchain install nightly --profile minimal`"
        );
    }
    let installed = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if installed
        .split_whitespace()
        .any(|w| w == CARGO_FUZZ_VERSION)
    {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    run(Command::new(cargo()).args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
    ]))
}

/// `cargo xtask fuzz [--dev] [--secs N] [TARGET...]`: run each target (default all) for N
/// seconds (default 60) from its committed corpus, built optimised (`--dev`: unoptimised, for
/// short runs); crashes land in `fuzz/artifacts/<target>/`.
fn fuzz(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let mut secs = 60u64;
    let mut profile: &[&str] = &[];
    let mut targets: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dev" => profile = &["--dev"],
            "--secs" => {
                secs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("--secs needs a number of seconds"))?;
            }
            t if FUZZ_TARGETS.contains(&t) => targets.push(t),
            other => {
                anyhow::bail!("unknown fuzz target or option `{other}` (targets: {FUZZ_TARGETS:?})")
            }
        }
    }
    if targets.is_empty() {
        targets = FUZZ_TARGETS.to_vec();
    }
    ensure_cargo_fuzz()?;
    let fuzz_dir = root.join("fuzz");
    let plugin = root.join("target/plugins/hello.wasm");
    // One build of every target (they share the host), then the runs.
    run(Command::new("cargo")
        .current_dir(&fuzz_dir)
        .args(["+nightly", "fuzz", "build", "--sanitizer", "none"])
        .args(profile))?;
    for target in targets {
        let found = fuzz_dir.join("target/new-corpus").join(target);
        std::fs::create_dir_all(&found)?;
        run(Command::new("cargo")
            .current_dir(&fuzz_dir)
            .env("PORTCULLIS_FUZZ_PLUGIN", &plugin)
            // No sanitizer: the host is safe Rust (its one `unsafe` is the artifact cache, not
            // fuzzed); panics, hangs and failed invariants are what the targets look for.
            .args(["+nightly", "fuzz", "run", "--sanitizer", "none"])
            .args(profile)
            .arg(target)
            // New inputs go to fuzz/target/new-corpus/<target> (the committed corpus stays
            // as it is; merge finds into it with `cargo fuzz cmin`).
            .arg(&found)
            .arg(fuzz_dir.join("corpus").join(target))
            .args([
                "--",
                &format!("-max_total_time={secs}"),
                "-timeout=10",
                "-rss_limit_mb=4096",
            ]))?;
    }
    Ok(())
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Build the gateway and the benchmark binaries (`target/release` or `target/debug`); in
/// release, the micro-benchmarks too, in the same cargo invocation: one feature resolution
/// (dev-dependencies included) for all of them, so the gateway library is compiled once
/// rather than once for the binaries and again for `cargo bench`. In debug (the smoke after
/// `cargo test --workspace`), the whole workspace with its tests: the feature resolution
/// the test run just used, so only the benchmark's own binaries are new.
fn build_bench_binaries(root: &Path, release: bool) -> anyhow::Result<()> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root).arg("build");
    if release {
        cmd.args([
            "--release",
            "--benches",
            "-p",
            "portcullis",
            "-p",
            "portcullis-bench",
        ]);
    } else {
        cmd.args(["--workspace", "--tests"]);
    }
    run(cmd.arg("--bins"))
}

/// `program`, pinned to core 0 when `taskset` is there and the machine has two cores or more
/// (the benchmark's servers get core 1).
fn pinned_to_core_0(program: &Path) -> Command {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if cores >= 2 && Path::new("/usr/bin/taskset").exists() {
        let mut c = Command::new("/usr/bin/taskset");
        c.args(["-c", "0"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// `cargo run` the gateway with `config`, and once it answers print how to connect (after
/// the build output, so the hints do not scroll away); return when it exits.
fn run_gateway(root: &Path, config: &str) -> anyhow::Result<()> {
    eprintln!(
        "xtask: building and starting Portcullis with {config} (a cold first build takes 8-9 minutes)"
    );
    let mut child = Command::new(cargo())
        .current_dir(root)
        .args(["run", "-p", "portcullis", "--", "serve", "--config", config])
        .spawn()
        .context("starting cargo run")?;
    let listen = listen_address(&root.join(config)).unwrap_or_else(|| "127.0.0.1:8080".into());
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            bail!("the gateway exited with {status}");
        }
        if answers_health_check(&listen) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    eprintln!(
        "\nxtask: Portcullis is ready with {config}\n\
         xtask: MCP endpoint http://{listen}/mcp (Streamable HTTP, every MCP revision), OAuth required\n\
         xtask: development authorization server http://{listen}/dev-as (consent page, DCR; never in production)\n\
         xtask: MCP Inspector (Node 22 or newer): npx @modelcontextprotocol/inspector, transport \"Streamable HTTP\", the URL above\n\
         xtask: curl: TOKEN=$(cargo run -q -p portcullis -- token --config {config} --sub alice)\n\
         xtask:       then see README.md \"Quickstart\" for the request; Ctrl-C stops the gateway\n"
    );
    let status = child.wait()?;
    if !status.success() {
        bail!("the gateway exited with {status}");
    }
    Ok(())
}

/// Whether the gateway at `addr` answers `GET /healthz` with 200 (it binds before it loads
/// plugins; it answers once it serves).
fn answers_health_check(addr: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 12];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.1 200")
}

/// `[server] listen` of a configuration file, read without a TOML parser (xtask has no
/// dependencies): the first `listen = "..."` line.
fn listen_address(config: &Path) -> Option<String> {
    let text = std::fs::read_to_string(config).ok()?;
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("listen"))
        .and_then(|rest| rest.split('"').nth(1))
        .map(str::to_string)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// The SDKs ship copies of `wit/` (a published crate or package must contain its WIT); each
/// must be the same bytes as the original.
fn check_vendored_wit(root: &Path) -> anyhow::Result<()> {
    let original = std::fs::read(root.join("wit/plugin.wit"))?;
    for copy in [
        "sdk/rust/wit/plugin.wit",
        "sdk/python/portcullis_sdk/wit/plugin.wit",
        "sdk/js/wit/plugin.wit",
    ] {
        if std::fs::read(root.join(copy)).ok().as_deref() != Some(original.as_slice()) {
            bail!("{copy} differs from wit/plugin.wit: copy it again (`cp wit/plugin.wit {copy}`)");
        }
    }
    Ok(())
}

/// The Rust SDK's tests and the example plugins' own tests, natively (the way a plugin
/// author runs `cargo test`), and clippy on the SDK.
fn test_guest_code(root: &Path) -> anyhow::Result<()> {
    let native = root.join("target/guest-native");
    run(Command::new(cargo())
        .current_dir(root.join("sdk/rust"))
        .env("CARGO_TARGET_DIR", &native)
        .args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    run(Command::new(cargo())
        .current_dir(root.join("sdk/rust"))
        .env("CARGO_TARGET_DIR", &native)
        .args(["test"]))?;
    run(Command::new(cargo())
        .current_dir(root.join("plugins"))
        .env("CARGO_TARGET_DIR", &native)
        .args(["test", "-p", "hello", "-p", "notes", "-p", "rs-words"]))?;
    for lang in Script::ALL {
        lang.install(root)?;
        run(&mut lang.sdk_tests(root))?;
        for app in lang.examples(root)? {
            run(&mut lang.test(root, &app))?;
        }
    }
    Ok(())
}

/// Install the wasm target if rustup does not list it yet.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup")?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == "wasm32-wasip2")
    {
        return Ok(());
    }
    eprintln!("xtask: installing the wasm32-wasip2 target");
    run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))
}

/// Whether the Python and JavaScript example plugins must be built.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scripts {
    /// Tests and `build-plugins`: their toolchains are required.
    Required,
    /// `run`: built when python3 / node and npm are installed, else skipped with a note.
    IfInstalled,
}

/// Whether `program` is on `PATH`.
fn installed(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            let candidate = dir.join(program);
            candidate.is_file()
                && std::fs::metadata(&candidate).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt as _;
                    m.permissions().mode() & 0o111 != 0
                })
        })
    })
}

fn build_plugins(root: &Path, scripts: Scripts) -> anyhow::Result<()> {
    ensure_wasm_target()?;
    let guest_target = root.join("target/guest");
    run(Command::new(cargo())
        .current_dir(root.join("plugins"))
        .env("CARGO_TARGET_DIR", &guest_target)
        .args(["build", "--release", "--target", "wasm32-wasip2"]))?;
    let built = guest_target.join("wasm32-wasip2/release");
    let out = root.join("target/plugins");
    std::fs::create_dir_all(&out)?;
    for entry in std::fs::read_dir(&built)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let name = path
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .replace('_', "-");
            std::fs::copy(&path, out.join(&name))
                .with_context(|| format!("copying {}", path.display()))?;
            // The policies a plugin suggests travel beside it as `<name>.cedar`.
            let stem = name.trim_end_matches(".wasm");
            for kind in ["fixtures", "examples"] {
                let suggested = root.join(format!("plugins/{kind}/{stem}/policies.cedar"));
                if suggested.is_file() {
                    std::fs::copy(&suggested, out.join(format!("{stem}.cedar")))
                        .with_context(|| format!("copying {}", suggested.display()))?;
                }
            }
        }
    }
    build_script_plugins(root, &out, scripts)?;
    eprintln!("xtask: plugins are in {}", out.display());
    Ok(())
}

/// Install the pinned Python test peers (`tests/requirements.txt`) into `tests/.venv`.
fn install_python_peers(root: &Path) -> anyhow::Result<()> {
    install_venv(
        &root.join("tests/.venv"),
        &root.join("tests/requirements.txt"),
    )
}

/// A plugin language whose SDK has its own build command (Rust plugins build with cargo).
#[derive(Clone, Copy)]
enum Script {
    Python,
    JavaScript,
}

impl Script {
    const ALL: [Script; 2] = [Script::Python, Script::JavaScript];

    fn name(self) -> &'static str {
        match self {
            Script::Python => "Python",
            Script::JavaScript => "JavaScript",
        }
    }

    /// The programs building this language's plugins needs on `PATH`.
    fn toolchain(self) -> &'static [&'static str] {
        match self {
            Script::Python => &["python3"],
            Script::JavaScript => &["node", "npm"],
        }
    }

    /// The file that marks an example directory as a plugin in this language.
    fn marker(self) -> &'static str {
        match self {
            Script::Python => "app.py",
            Script::JavaScript => "app.js",
        }
    }

    /// The SDK's source (a build is stale when it is newer than the component).
    fn sdk(self, root: &Path) -> PathBuf {
        match self {
            Script::Python => root.join("sdk/python/portcullis_sdk"),
            Script::JavaScript => root.join("sdk/js"),
        }
    }

    /// The examples in this language: each directory under `plugins/examples` with the marker.
    fn examples(self, root: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir(root.join("plugins/examples"))? {
            let dir = entry?.path();
            if dir.join(self.marker()).is_file() {
                dirs.push(dir);
            }
        }
        dirs.sort();
        Ok(dirs)
    }

    /// Install the pinned toolchain: componentize-py (`sdk/python/requirements-build.txt`)
    /// in `target/guest-py/venv`; componentize-js and rolldown (`sdk/js/package-lock.json`)
    /// in `sdk/js/node_modules`, and each JS example's link to the SDK.
    fn install(self, root: &Path) -> anyhow::Result<()> {
        match self {
            Script::Python => install_venv(
                &root.join(PYTHON_VENV),
                &root.join("sdk/python/requirements-build.txt"),
            ),
            Script::JavaScript => {
                let mut dirs = vec![root.join("sdk/js")];
                dirs.extend(self.examples(root)?);
                install_npm(&dirs)
            }
        }
    }

    /// The command that builds the example in `app` into `wasm`.
    fn build(self, root: &Path, app: &Path, wasm: &Path) -> Command {
        let mut cmd = match self {
            Script::Python => {
                let mut c = python(root);
                c.args(["-m", "portcullis_sdk", "build", "app.py", "-o"]);
                c
            }
            Script::JavaScript => {
                let mut c = Command::new("node");
                c.arg(root.join("sdk/js/bin/portcullis-plugin.mjs"))
                    .args(["build", "app.js", "-o"]);
                c
            }
        };
        cmd.current_dir(app).arg(wasm);
        cmd
    }

    /// The command that runs the SDK's own tests.
    fn sdk_tests(self, root: &Path) -> Command {
        match self {
            Script::Python => {
                let mut c = python(root);
                c.current_dir(root.join("sdk/python")).arg("test_sdk.py");
                c
            }
            Script::JavaScript => {
                let mut c = Command::new("node");
                c.current_dir(root.join("sdk/js")).args(["--test", "test/"]);
                c
            }
        }
    }

    /// The command that runs the example's own native tests.
    fn test(self, root: &Path, app: &Path) -> Command {
        let mut cmd = match self {
            Script::Python => {
                let mut c = python(root);
                c.arg("test_app.py");
                c
            }
            Script::JavaScript => {
                let mut c = Command::new("node");
                c.args(["--test", "test/"]);
                c
            }
        };
        cmd.current_dir(app);
        cmd
    }
}

/// Where the Python plugin toolchain (componentize-py) is installed.
const PYTHON_VENV: &str = "target/guest-py/venv";

/// That toolchain's interpreter, with this checkout's SDK on the module path (and no
/// bytecode written into the source tree).
fn python(root: &Path) -> Command {
    let mut c = Command::new(root.join(PYTHON_VENV).join("bin/python"));
    c.env("PYTHONPATH", root.join("sdk/python"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    c
}

/// The newest modification time of the files under `dirs` (installed packages and caches
/// aside).
fn newest(dirs: &[PathBuf]) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "__pycache__" || n == "node_modules")
            {
                continue;
            }
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            }
        } else if let Ok(modified) = meta.modified() {
            newest = newest.max(modified);
        }
    }
    newest
}

/// Build each Python and JavaScript example with its SDK's build command, unless its
/// component is newer than the app and the SDK (a build takes ~10-40 s).
fn build_script_plugins(root: &Path, out: &Path, scripts: Scripts) -> anyhow::Result<()> {
    for lang in Script::ALL {
        let apps = lang.examples(root)?;
        if apps.is_empty() {
            continue;
        }
        let missing: Vec<&str> = lang
            .toolchain()
            .iter()
            .copied()
            .filter(|p| !installed(p))
            .collect();
        if scripts == Scripts::IfInstalled && !missing.is_empty() {
            eprintln!(
                "xtask: not building the {} example plugins ({} not installed; the quickstart does not need them)",
                lang.name(),
                missing.join(", ")
            );
            continue;
        }
        lang.install(root)?;
        for app in apps {
            let name = app
                .file_name()
                .expect("a directory")
                .to_string_lossy()
                .into_owned();
            let wasm = out.join(format!("{name}.wasm"));
            let built = std::fs::metadata(&wasm).and_then(|m| m.modified()).ok();
            if built.is_some_and(|b| b > newest(&[app.clone(), lang.sdk(root)])) {
                continue;
            }
            eprintln!("xtask: building the {} plugin {name}", lang.name());
            run(&mut lang.build(root, &app, &wasm))?;
        }
    }
    Ok(())
}

/// Create the virtual environment `venv` and install `requirements` into it, unless it
/// already has exactly those.
fn install_venv(venv: &Path, requirements: &Path) -> anyhow::Result<()> {
    let stamp = venv.join("installed-requirements.txt");
    if std::fs::read(&stamp).ok() == std::fs::read(requirements).ok() {
        return Ok(());
    }
    if !venv.join("bin/python").is_file() {
        eprintln!("xtask: creating {}", venv.display());
        run(Command::new("python3").args(["-m", "venv"]).arg(venv))?;
    }
    eprintln!(
        "xtask: installing Python packages from {}",
        requirements.display()
    );
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(requirements))?;
    std::fs::copy(requirements, &stamp)?;
    Ok(())
}

/// The Debian packages the tests start as real peers (the cluster tests' Redis and load
/// balancers), each with the program that shows it is installed, pinned to bookworm's
/// security-updated versions.
const DEBIAN_PEERS: [(&str, &str, &str); 5] = [
    ("redis-server", "redis-server", "5:7.0.15-1~deb12u10"),
    ("nginx", "nginx", "1.22.1-9+deb12u11"),
    ("haproxy", "haproxy", "2.6.12-1+deb12u4"),
    ("buildah", "buildah", BUILDAH),
    // The browser of the consent-flow test (driven by playwright-core, which downloads none).
    ("chromium", "chromium", "156.0.8078.129-1~deb12u1"),
];

/// The pinned `buildah` (`cargo xtask image`, and the image test).
const BUILDAH: &str = "1.28.2+ds1-3+deb12u1+b3";

/// Install the missing packages of `peers` (package, program, version) with apt-get. A
/// pinned version the archive no longer carries (the security archive keeps only the newest)
/// falls back to the archive's candidate, with a warning naming what was installed.
fn install_debian_peers(peers: &[(&str, &str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<_> = peers
        .iter()
        .filter(|(_, program, _)| {
            !std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
            }) && !Path::new("/usr/sbin").join(program).is_file()
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let apt = |args: &[String]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    eprintln!("xtask: installing Debian test peers: {missing:?}");
    anyhow::ensure!(
        apt(&["update".into(), "-qq".into()]),
        "apt-get update failed"
    );
    let pinned: Vec<String> = missing.iter().map(|(p, _, v)| format!("{p}={v}")).collect();
    let mut install = vec!["install".into(), "-y".into(), "-qq".into()];
    if apt(&[install.clone(), pinned].concat()) {
        return Ok(());
    }
    eprintln!(
        "xtask: WARNING: the pinned versions are gone from the archive; installing its current ones"
    );
    install.extend(missing.iter().map(|(p, _, _)| p.to_string()));
    anyhow::ensure!(apt(&install), "apt-get install failed");
    Ok(())
}

/// The npm projects with pinned test peers: Node 22 and the SDKs, then the two conformance
/// suite versions.
const NPM_PEERS: [&str; 3] = [
    "tests",
    "tests/conformance-0.1.16",
    "tests/conformance-0.2.0",
];

/// Install the pinned npm test peers in `dirs` (lockfiles there) if missing or stale.
fn install_test_peers(root: &Path, dirs: &[&str]) -> anyhow::Result<()> {
    install_npm(&dirs.iter().map(|d| root.join(d)).collect::<Vec<_>>())
}

/// `npm ci` in each of `dirs` (a lockfile there) whose installed packages are missing or
/// older than the lockfile.
fn install_npm(dirs: &[PathBuf]) -> anyhow::Result<()> {
    for dir in dirs {
        let lock = dir.join("package-lock.json");
        let installed = dir.join("node_modules/.package-lock.json");
        let fresh = match (std::fs::metadata(&lock), std::fs::metadata(&installed)) {
            (Ok(l), Ok(i)) => i.modified()? >= l.modified()?,
            _ => false,
        };
        if fresh {
            continue;
        }
        eprintln!("xtask: installing npm packages in {}", dir.display());
        run(Command::new("npm")
            .current_dir(dir)
            .args(["ci", "--no-audit", "--no-fund"]))?;
    }
    Ok(())
}
