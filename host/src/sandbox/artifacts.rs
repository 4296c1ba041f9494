//! The compiled-artifact cache: precompiled components on disk, so a restart (or a reload of
//! a version seen before) deserializes instead of compiling.
//!
//! Owns the cache directory, its key and its file names. A cached artifact is native code the
//! gateway will run, so nothing in the directory is trusted for being there:
//!
//! * the directory must be a real directory (not a symlink) owned by the gateway's user and
//!   writable by no one else, else the cache is off (logged) and every plugin compiles;
//! * each artifact carries an HMAC-SHA256, under a per-cache key (`key`, 0600, created by
//!   this host and held in memory from start), over the component's SHA-256, the engine tag
//!   and the artifact bytes. A file is read into memory, its owner and MAC checked, and only
//!   those verified bytes are deserialized: a planted file, a file from before the directory
//!   was locked down, or a directory swapped after start fails the MAC and is recompiled;
//! * the directory is kept under a size cap (oldest artifacts removed first).
//!
//! An artifact's name is the SHA-256 of the component bytes plus the engine's compatibility
//! hash (wasmtime version and every setting that affects code generation) and this host's
//! version, so a different engine never looks at another's artifacts. Files are written to a
//! temporary name and renamed. It must not decide what to compile: [`super::Sandbox::compile`]
//! asks it first and fills it after.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Length of the MAC that opens every artifact file.
const MAC_LEN: usize = 32;

/// Why a cache directory is not used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unusable {
    #[error("cannot prepare it: {0}")]
    Io(#[from] std::io::Error),
    #[error("it is a symbolic link")]
    Symlink,
    #[error("it is owned by uid {owner}, not by the gateway's user (uid {me})")]
    NotOurs { owner: u32, me: u32 },
    #[error("others can write to it (mode {0:o}) and it cannot be made private")]
    Writable(u32),
    #[error("its key file is not a private regular file of the gateway's user")]
    BadKey,
}

/// A directory of precompiled components for one engine configuration.
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_tag: String,
    key: [u8; 32],
    /// The gateway's user, that must own every artifact read.
    uid: u32,
    max_bytes: u64,
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ArtifactCache {
    /// Use `dir` (created owner-only if missing) for `engine`'s artifacts, at most
    /// `max_bytes` of them.
    pub(crate) fn open(dir: &Path, engine: &Engine, max_bytes: u64) -> Result<Self, Unusable> {
        std::fs::create_dir_all(dir)?;
        let uid = private_dir(dir)?;
        let key = load_or_create_key(&dir.join("key"), uid)?;
        // DefaultHasher::new() has fixed keys: the same engine settings give the same tag.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine_tag: format!("{:016x}", h.finish()),
            key,
            uid,
            max_bytes,
        })
    }

    fn path_for(&self, digest: &[u8]) -> PathBuf {
        let digest = hex::encode(digest);
        self.dir
            .join(format!("{}-{}.cwasm", &digest[..32], self.engine_tag))
    }

    fn mac(&self, digest: &[u8], artifact: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        mac.update(digest);
        mac.update(self.engine_tag.as_bytes());
        mac.update(artifact);
        mac
    }

    /// The cached artifact for these component bytes, if there is an authentic one. A file
    /// that is not ours, fails its MAC or does not load is removed and reported as a miss.
    pub(crate) fn load(&self, engine: &Engine, bytes: &[u8]) -> Option<Component> {
        let digest = Sha256::digest(bytes);
        let path = self.path_for(&digest);
        let data = self.read_verified(&path, &digest)?;
        // SAFETY: `Component::deserialize` trusts its input to be an artifact produced by
        // `Component::serialize` of a compatible engine; arbitrary bytes could make wasmtime
        // run unchecked machine code. These bytes were read into memory and carry a valid
        // HMAC-SHA256 under this cache's key (held in memory, in a 0600 file of this user)
        // over exactly this component's digest, this engine's tag and these bytes: only
        // `store` below, with the output of `Component::serialize` for this component, makes
        // such a MAC. wasmtime additionally checks the artifact's header against the engine.
        #[allow(
            unsafe_code,
            reason = "deserializing artifacts this host wrote and authenticated; see SAFETY"
        )]
        let loaded = unsafe { Component::deserialize(engine, &data[MAC_LEN..]) };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(artifact = %path.display(), "discarding an unusable cached artifact: {e:#}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// The artifact file's bytes, if it is ours and authentic.
    fn read_verified(&self, path: &Path, digest: &[u8]) -> Option<Vec<u8>> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        let owned = meta.file_type().is_file() && owner(&meta) == self.uid;
        let data = if owned {
            std::fs::read(path).ok()
        } else {
            None
        };
        let authentic = data.as_ref().is_some_and(|d| {
            d.len() > MAC_LEN
                && self
                    .mac(digest, &d[MAC_LEN..])
                    .verify_slice(&d[..MAC_LEN])
                    .is_ok()
        });
        if !authentic {
            tracing::warn!(artifact = %path.display(),
                "discarding a cached artifact this gateway did not write (wrong owner, type or MAC); recompiling");
            let _ = std::fs::remove_file(path);
            return None;
        }
        data
    }

    /// Save `component`'s artifact for these bytes; failures are logged, never fatal.
    pub(crate) fn store(&self, bytes: &[u8], component: &Component) {
        let digest = Sha256::digest(bytes);
        let path = self.path_for(&digest);
        let result = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|artifact| {
                let mut data = self
                    .mac(&digest, &artifact)
                    .finalize()
                    .into_bytes()
                    .to_vec();
                data.extend_from_slice(&artifact);
                // A fresh inode per writer: a concurrent writer never truncates a file someone
                // may be reading.
                static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
                write_private(&tmp, &data)?;
                std::fs::rename(&tmp, &path)
            });
        if let Err(e) = result {
            tracing::warn!(artifact = %path.display(), "cannot save the compiled artifact: {e}");
        }
        self.collect();
    }

    /// Keep the directory under its size cap: remove the least recently written artifacts.
    fn collect(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut artifacts: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = artifacts.iter().map(|(_, len, _)| len).sum();
        artifacts.sort();
        for (_, len, path) in artifacts {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                tracing::info!(artifact = %path.display(), "removed an old cached artifact (sandbox.cache_max_mb)");
                total -= len;
            }
        }
    }
}

#[cfg(unix)]
fn owner(meta: &std::fs::Metadata) -> u32 {
    std::os::unix::fs::MetadataExt::uid(meta)
}

#[cfg(not(unix))]
fn owner(_meta: &std::fs::Metadata) -> u32 {
    0
}

/// Check that `dir` is a real directory of this user that no one else can write (making it
/// 0700 if it is ours); returns this user's uid.
fn private_dir(dir: &Path) -> Result<u32, Unusable> {
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(Unusable::Symlink);
    }
    // This user's uid: the owner of a file it just created.
    let probe = dir.join(format!(".owner-probe.{}", std::process::id()));
    write_private(&probe, b"")?;
    let me = owner(&std::fs::symlink_metadata(&probe)?);
    std::fs::remove_file(&probe)?;
    if owner(&meta) != me {
        return Err(Unusable::NotOurs {
            owner: owner(&meta),
            me,
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let mode = std::fs::symlink_metadata(dir)?.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(Unusable::Writable(mode & 0o777));
        }
    }
    Ok(me)
}

/// The cache's key: read from `path` if it is a private regular file of this user, else
/// (when there is none) 32 fresh random bytes written there with mode 0600.
fn load_or_create_key(path: &Path, uid: u32) -> Result<[u8; 32], Unusable> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            #[cfg(unix)]
            let private = {
                use std::os::unix::fs::PermissionsExt as _;
                meta.permissions().mode() & 0o077 == 0
            };
            #[cfg(not(unix))]
            let private = true;
            if !meta.file_type().is_file() || owner(&meta) != uid || !private {
                return Err(Unusable::BadKey);
            }
            std::fs::read(path)?
                .try_into()
                .map_err(|_| Unusable::BadKey)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            rand::fill(&mut key);
            let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
            write_private(&tmp, &key)?;
            std::fs::rename(&tmp, path)?;
            Ok(key)
        }
        Err(e) => Err(e.into()),
    }
}

/// Write `data` to a new file at `path`, readable by this user only; refuses to follow an
/// existing file or symlink there.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(data)
}
