//! `chats3 cluster-cert`: a development set of trunk certificates (a cluster
//! CA, and one node certificate and key it signed) written to a directory.
//! Every node of a test cluster can use the same set; production clusters
//! sign one certificate per node with their own CA.

use std::io::Write;
use std::path::{Path, PathBuf};

use chats3_media::trunk::TrunkTls;

/// The files written, as `(name, contents, private)`.
const FILES: [&str; 3] = ["ca.pem", "node.pem", "node.key"];

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0}")]
    Generate(#[from] chats3_media::trunk::tls::TlsError),
    #[error("{0} exists: not overwritten")]
    Exists(PathBuf),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// Writes `ca.pem`, `node.pem` and `node.key` (mode 0600) into `dir`
/// (created if missing); refuses to overwrite any of them.
pub fn write(dir: &Path) -> Result<Vec<PathBuf>, CertError> {
    let set = TrunkTls::generate()?;
    std::fs::create_dir_all(dir).map_err(|e| CertError::Write(dir.into(), e))?;
    let paths: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();
    if let Some(p) = paths.iter().find(|p| p.exists()) {
        return Err(CertError::Exists(p.clone()));
    }
    for (path, pem) in paths.iter().zip([&set.ca_pem, &set.cert_pem, &set.key_pem]) {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(path)
            .and_then(|mut f| f.write_all(pem.as_bytes()))
            .map_err(|e| CertError::Write(path.clone(), e))?;
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_usable_set_once() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write(dir.path()).unwrap();
        let read = |i: usize| std::fs::read_to_string(&paths[i]).unwrap();
        let set = TrunkTls {
            ca_pem: read(0),
            cert_pem: read(1),
            key_pem: read(2),
        };
        set.client_config().unwrap();
        assert!(matches!(write(dir.path()), Err(CertError::Exists(_))));
    }
}
