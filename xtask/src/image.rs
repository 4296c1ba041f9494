//! `cargo xtask image`: the gateway's container image, assembled offline with Debian's
//! `buildah` (vfs storage, no daemon, no base image to pull): the binary, the shared libraries
//! it links (from `ldd`), the system's CA bundle, and nothing else — no shell, no package
//! manager. It runs as 65532:65532 (non-root; `deploy/k8s` expects that user and a read-only
//! root filesystem), exposes 8080, and its entrypoint is the binary with `serve --config
//! /etc/portcullis/portcullis.toml` as the default arguments. `Containerfile` at the
//! repository root builds the same image where a registry is reachable.
//!
//! Flags: `--debug` (the debug binary already built, for tests), `--tag NAME` (default
//! `localhost/portcullis:<version>`), `--store DIR` (a buildah storage root of its own;
//! default buildah's).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The user the image runs as (`deploy/k8s/deployment.yaml` sets the same).
const USER: &str = "65532:65532";
/// Where the binary lives in the image.
const BINARY: &str = "/usr/local/bin/portcullis";
/// The CA bundle (rustls reads the system's roots; `SSL_CERT_FILE` points here).
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Build the image as `args` ask.
pub(crate) fn build(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let debug = args.iter().any(|a| a == "--debug");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let version = env!("CARGO_PKG_VERSION");
    let tag = value("--tag").unwrap_or_else(|| format!("localhost/portcullis:{version}"));
    let store = value("--store").map(PathBuf::from);
    if !debug {
        super::run(Command::new(super::cargo()).current_dir(root).args([
            "build",
            "--release",
            "-p",
            "portcullis",
            "--bin",
            "portcullis",
        ]))?;
    }
    let binary = root
        .join(if debug {
            "target/debug"
        } else {
            "target/release"
        })
        .join("portcullis");
    anyhow::ensure!(binary.is_file(), "{} is not built", binary.display());
    super::install_debian_peers(&[("buildah", "buildah", super::BUILDAH)])?;
    let buildah = |extra: &[&str]| -> anyhow::Result<String> {
        let mut cmd = Command::new("buildah");
        cmd.args(["--storage-driver", "vfs"]);
        if let Some(store) = &store {
            cmd.arg("--root")
                .arg(store.join("root"))
                .arg("--runroot")
                .arg(store.join("run"));
        }
        let out = cmd.args(extra).output().context("running buildah")?;
        if !out.status.success() {
            bail!(
                "buildah {extra:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let ctr = buildah(&["from", "scratch"])?;
    let assembled = (|| -> anyhow::Result<()> {
        let copy = |from: &Path, to: &str| -> anyhow::Result<()> {
            let from = from
                .canonicalize()
                .with_context(|| from.display().to_string())?;
            buildah(&["copy", "--chmod", "0755", &ctr, &from.to_string_lossy(), to])?;
            Ok(())
        };
        copy(&binary, BINARY)?;
        for lib in linked_libraries(&binary)? {
            copy(&lib, &lib.to_string_lossy())?;
        }
        if Path::new(CA_BUNDLE).is_file() {
            copy(Path::new(CA_BUNDLE), CA_BUNDLE)?;
        }
        buildah(&[
            "config",
            "--user",
            USER,
            "--port",
            "8080/tcp",
            "--entrypoint",
            &format!("[\"{BINARY}\"]"),
            "--cmd",
            "serve --config /etc/portcullis/portcullis.toml",
            "--workingdir",
            "/",
            "--env",
            &format!("SSL_CERT_FILE={CA_BUNDLE}"),
            // Large freed answers go back to the system (docs/DEPLOYMENT.md).
            "--env",
            "MALLOC_MMAP_THRESHOLD_=1048576",
            "--label",
            "org.opencontainers.image.title=portcullis",
            "--label",
            &format!("org.opencontainers.image.version={version}"),
            &ctr,
        ])?;
        buildah(&["commit", "--rm", &ctr, &tag])?;
        Ok(())
    })();
    if assembled.is_err() {
        let _ = buildah(&["rm", &ctr]);
    }
    assembled?;
    eprintln!(
        "xtask: built image {tag} ({} binary)",
        if debug { "debug" } else { "release" }
    );
    Ok(())
}

/// The shared libraries `binary` loads, as `ldd` lists them (the loader included).
fn linked_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd")?;
    anyhow::ensure!(out.status.success(), "ldd {} failed", binary.display());
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux… (0x…)`.
            let path = line.split("=>").last()?.trim().split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}
