//! The compiled-artifact cache: precompiled components on disk, so a restart (or a reload of
//! a version seen before) deserializes instead of compiling.
//!
//! Owns the cache directory and its file names. An artifact's name is the SHA-256 of the
//! component bytes, the engine's compatibility hash (wasmtime version and every setting that
//! affects code generation) and this host's version, so a different engine never even looks
//! at another's artifacts (and wasmtime checks compatibility again when loading). Files are
//! written to a temporary name and renamed, so a reader never sees half an artifact. It must
//! not decide what to compile: [`super::Sandbox::compile`] asks it first and fills it after.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of precompiled components for one engine configuration.
#[derive(Debug)]
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_tag: String,
}

impl ArtifactCache {
    /// Use (and create, owner-only) `dir` for `engine`'s artifacts.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        // DefaultHasher::new() has fixed keys: the same engine settings give the same tag.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine_tag: format!("{:016x}", h.finish()),
        })
    }

    fn path_for(&self, bytes: &[u8]) -> PathBuf {
        let digest = hex::encode(Sha256::digest(bytes));
        self.dir
            .join(format!("{}-{}.cwasm", &digest[..32], self.engine_tag))
    }

    /// The cached artifact for these component bytes, if there is a usable one. A file that
    /// does not load (corrupt, or from an incompatible engine) is removed and reported as a
    /// miss.
    pub(crate) fn load(&self, engine: &Engine, bytes: &[u8]) -> Option<Component> {
        let path = self.path_for(bytes);
        if !path.is_file() {
            return None;
        }
        // SAFETY: `Component::deserialize_file` trusts its input to be an artifact produced by
        // `Component::serialize` of a compatible engine; arbitrary bytes could make wasmtime
        // run unchecked machine code. The only files read here are in a directory this host
        // created owner-only (0700), under names derived from the component's SHA-256 and
        // this engine's compatibility hash, and written by `store` below (via a temporary
        // file and rename) with the output of `Component::serialize` for exactly those bytes.
        // wasmtime additionally checks the artifact's header against the engine's settings.
        // An operator must not point `cache_dir` at a directory others can write.
        #[allow(
            unsafe_code,
            reason = "deserializing artifacts this host wrote; see SAFETY above"
        )]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(artifact = %path.display(), "discarding an unusable cached artifact: {e:#}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Save `component`'s artifact for these bytes; failures are logged, never fatal.
    pub(crate) fn store(&self, bytes: &[u8], component: &Component) {
        let path = self.path_for(bytes);
        let result = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|data| {
                // A fresh inode per writer: a concurrent writer never truncates a file someone
                // may already have mapped.
                static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
                std::fs::write(&tmp, data)?;
                std::fs::rename(&tmp, &path)
            });
        if let Err(e) = result {
            tracing::warn!(artifact = %path.display(), "cannot save the compiled artifact: {e}");
        }
    }
}
