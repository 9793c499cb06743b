//! What the MCP server may read and write, checked after resolving symlinks.
//!
//! Agents name paths; a server that trusted them would read `~/.ssh` on request. `send_file`
//! reads only files under the allowed roots; received files
//! land only in the download folder or an `output_dir` inside a root or the download folder.
//! Every path is resolved (symlinks, `..`) before the check, like the reference filesystem
//! MCP server, and a refusal names what was refused and why.
//!
//! The allowed roots are, in order of precedence: the `--root` flags; else the roots the client
//! declares (MCP `roots/list`, asked before the first call that needs them and again after each
//! `notifications/roots/list_changed`); else the working directory, for clients without roots.
//! A client that declares roots and lists none (or none that is an existing local folder) gets
//! exactly that: no file may be read, and each refusal is `no_roots`, whose hint names `--root`.
//! Falling back to the working directory would widen what the client asked for.

use std::path::{Component, Path, PathBuf};

use crate::error::{Result, TransferError};

#[derive(Clone, Debug)]
pub struct Roots {
    roots: Vec<PathBuf>,
    download_dir: PathBuf,
    /// Whether the client's roots replace these (no `--root` was given).
    client_may_replace: bool,
}

fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| TransferError::io(path, e))
}

impl Roots {
    /// `roots` must exist; `download_dir` need not: the first receive creates it, so that
    /// starting a server creates nothing.
    pub fn new(roots: &[PathBuf], download_dir: &Path) -> Result<Self> {
        let roots = roots.iter().map(|r| canonical(r)).collect::<Result<Vec<_>>>()?;
        let download_dir = std::path::absolute(download_dir).map_err(|e| TransferError::io(download_dir, e))?;
        Ok(Roots { roots, download_dir: resolve_existing(&download_dir)?, client_may_replace: false })
    }

    /// `defaults` (the working directory) until the client declares roots of its own.
    pub fn unless_client_declares(defaults: &[PathBuf], download_dir: &Path) -> Result<Self> {
        Ok(Roots { client_may_replace: true, ..Roots::new(defaults, download_dir)? })
    }

    pub fn client_may_replace(&self) -> bool {
        self.client_may_replace
    }

    /// These roots with the folders a client declared (`file://` URIs) instead: those that
    /// exist, resolved; others are skipped with a warning.
    pub fn with_client_roots<'a>(&self, uris: impl IntoIterator<Item = &'a str>) -> Roots {
        let roots = uris
            .into_iter()
            .filter_map(|uri| {
                let path = uri.strip_prefix("file://").and_then(super::resources::decode).map(PathBuf::from);
                match path.as_deref().map(std::fs::canonicalize) {
                    Some(Ok(real)) => Some(real),
                    _ => {
                        tracing::warn!(uri, "ignoring a client root that is not an existing local folder");
                        None
                    }
                }
            })
            .collect();
        Roots { roots, ..self.clone() }
    }

    pub fn download_dir(&self) -> &Path {
        &self.download_dir
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    fn list(&self) -> String {
        self.roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
    }

    /// Relative paths are taken from the first root.
    fn absolute(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() { p.to_owned() } else { self.roots.first().map_or_else(|| p.to_owned(), |r| r.join(p)) }
    }

    /// The real path of a file `send_file` may read. A path outside the roots is refused
    /// whether or not it exists, so refusals do not reveal what exists out there.
    pub fn readable_file(&self, path: &str) -> Result<PathBuf> {
        let wanted = self.absolute(path);
        if self.roots.is_empty() {
            return Err(TransferError::NoRoots(format!("refused to read {}", wanted.display())));
        }
        let real = match std::fs::canonicalize(&wanted) {
            Ok(real) => real,
            Err(e) => {
                let unreadable =
                    TransferError::SourceUnreadable { path: wanted.display().to_string(), reason: e.to_string() };
                let lexical = normalize(&wanted);
                return Err(if self.roots.iter().any(|r| lexical.starts_with(r)) {
                    unreadable
                } else {
                    TransferError::PathNotAllowed(format!(
                        "refused to read {}: it is outside the allowed roots ({})",
                        wanted.display(),
                        self.list()
                    ))
                });
            }
        };
        if !self.roots.iter().any(|r| real.starts_with(r)) {
            return Err(TransferError::PathNotAllowed(format!(
                "refused to read {}: it resolves to {}, outside the allowed roots ({})",
                wanted.display(),
                real.display(),
                self.list()
            )));
        }
        Ok(real)
    }

    /// The real folder `receive_file` may write into: the download folder by default, else an
    /// `output_dir` inside a root or the download folder (created if missing).
    pub fn writable_dir(&self, output_dir: Option<&str>) -> Result<PathBuf> {
        let Some(dir) = output_dir else { return Ok(self.download_dir.clone()) };
        let wanted = self.absolute(dir);
        if wanted.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(TransferError::PathNotAllowed(format!(
                "refused to write into {}: `..` is not allowed",
                wanted.display()
            )));
        }
        let real = resolve_existing(&wanted)?;
        let allowed = self.roots.iter().chain([&self.download_dir]).any(|r| real.starts_with(r));
        if !allowed && self.roots.is_empty() {
            return Err(TransferError::NoRoots(format!("refused to write into {}", wanted.display())));
        }
        if !allowed {
            return Err(TransferError::PathNotAllowed(format!(
                "refused to write into {}: it resolves to {}, outside the download folder ({}) and the allowed roots ({})",
                wanted.display(),
                real.display(),
                self.download_dir.display(),
                self.list()
            )));
        }
        Ok(real)
    }
}

/// `path` with its deepest existing folder resolved (symlinks, `..`); what is below it cannot
/// be a symlink yet.
fn resolve_existing(path: &Path) -> Result<PathBuf> {
    let mut existing = path.to_owned();
    let mut rest = Vec::new();
    while !existing.exists() {
        rest.push(existing.file_name().map(|n| n.to_owned()).unwrap_or_default());
        if !existing.pop() {
            break;
        }
    }
    let mut real = canonical(&existing)?;
    real.extend(rest.iter().rev());
    Ok(real)
}

/// `path` with `.` and `..` resolved lexically (for paths that do not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("ok.txt"), b"x").unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link.txt")).unwrap();
        let roots = Roots::new(std::slice::from_ref(&root), &dir.path().join("dl")).unwrap();
        assert!(!dir.path().join("dl").exists(), "a server's start creates no folder");

        assert!(roots.readable_file("ok.txt").is_ok());
        assert_eq!(roots.readable_file("../secret.txt").unwrap_err().code(), "path_not_allowed");
        assert_eq!(roots.readable_file("link.txt").unwrap_err().code(), "path_not_allowed");
        assert_eq!(roots.readable_file("/etc/passwd").unwrap_err().code(), "path_not_allowed");
        assert_eq!(roots.readable_file("/nonexistent/x").unwrap_err().code(), "path_not_allowed");
        assert_eq!(roots.readable_file("missing.txt").unwrap_err().code(), "source_unreadable");

        assert_eq!(roots.writable_dir(None).unwrap(), roots.download_dir());
        assert!(roots.writable_dir(Some("sub/new")).unwrap().starts_with(&roots.roots()[0]));
        assert_eq!(roots.writable_dir(Some("/tmp")).unwrap_err().code(), "path_not_allowed");
        assert_eq!(roots.writable_dir(Some("sub/../../x")).unwrap_err().code(), "path_not_allowed");

        let other = dir.path().join("other root");
        std::fs::create_dir_all(&other).unwrap();
        let uri = format!("file://{}", other.display()).replace(' ', "%20");
        let narrowed = roots.with_client_roots([uri.as_str(), "file:///nonexistent", "https://x"]);
        assert_eq!(narrowed.roots(), [other.canonicalize().unwrap()]);
        assert_eq!(
            narrowed.readable_file(&root.join("ok.txt").display().to_string()).unwrap_err().code(),
            "path_not_allowed"
        );
    }
}
