//! The one-node vault store: a directory with one file per grant, named by the grant's keyed
//! digest and holding only its sealed text.
//!
//! Why files rather than an embedded database: a grant is read and written whole, never
//! queried; a file per grant replaced by rename is atomic without a log or a lock, survives a
//! crash mid-write (the old grant stays), needs no dependency, and an operator can back it up,
//! inspect the names and delete one user's grant with ordinary tools. The directory is
//! created owner-only (0700) and each file 0600.

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;

use super::{VaultError, VaultStore};

/// Grants as files in one directory.
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// The store in `dir`, created (owner-only) if missing.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("vault.dir: cannot create {}: {e}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
                anyhow::anyhow!("vault.dir: cannot restrict {}: {e}", dir.display())
            })?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The file for `name`; names are the vault's own (a tenant id and a hex digest), checked
    /// anyway so no name reaches outside the directory.
    fn path(&self, name: &str) -> Result<PathBuf, VaultError> {
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plain {
            return Err(VaultError::Unavailable(
                "a grant name that is not plain".into(),
            ));
        }
        Ok(self.dir.join(format!("{name}.grant")))
    }
}

fn unavailable(e: std::io::Error) -> VaultError {
    VaultError::Unavailable(e.to_string())
}

impl VaultStore for FileStore {
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, VaultError>> {
        Box::pin(async move {
            match tokio::fs::read_to_string(self.path(name)?).await {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    fn put<'a>(&'a self, name: &'a str, sealed: &'a str) -> BoxFuture<'a, Result<(), VaultError>> {
        Box::pin(async move {
            let path = self.path(name)?;
            let temp =
                path.with_extension(format!("tmp-{}", hex::encode(rand::random::<[u8; 8]>())));
            let mut options = tokio::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            options.mode(0o600);
            let mut file = options.open(&temp).await.map_err(unavailable)?;
            use tokio::io::AsyncWriteExt as _;
            let written = async {
                file.write_all(sealed.as_bytes()).await?;
                file.sync_all().await?;
                tokio::fs::rename(&temp, &path).await
            }
            .await;
            if let Err(e) = written {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(unavailable(e));
            }
            Ok(())
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, VaultError>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path(name)?).await {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(unavailable(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grants_are_owner_only_files_replaced_whole_and_names_stay_inside() {
        let dir = std::env::temp_dir().join(format!("portcullis-vault-{}", rand::random::<u64>()));
        let store = FileStore::open(&dir).unwrap();
        store.put("a-00ff", "v1.k.first").await.unwrap();
        store.put("a-00ff", "v1.k.second").await.unwrap();
        assert_eq!(
            store.get("a-00ff").await.unwrap().as_deref(),
            Some("v1.k.second")
        );
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(files.len(), 1, "no temporary file left");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join("a-00ff.grant")), 0o600);
        }
        for hostile in ["../x", "a/b", "", ".."] {
            assert!(store.get(hostile).await.is_err(), "{hostile}");
        }
        assert!(store.delete("a-00ff").await.unwrap());
        assert!(!store.delete("a-00ff").await.unwrap());
        assert_eq!(store.get("a-00ff").await.unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
