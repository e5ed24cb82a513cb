//! `fleet certs`: a cluster CA and the certificates it signs, as PEM files in a directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fleet_proto::tls::{self, CertifiedKey, Role};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";

pub fn cert_paths(dir: &Path, role: Role, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{}-{name}.pem", role.name())),
        dir.join(format!("{}-{name}-key.pem", role.name())),
    )
}

fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Creates a CA in `dir`; refuses to overwrite an existing one unless `force`.
pub fn init(dir: &Path, cluster: &str, force: bool) -> Result<CertifiedKey> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cert = dir.join(CA_CERT);
    if cert.exists() && !force {
        bail!(
            "{} already exists; pass --force to replace the cluster CA",
            cert.display()
        );
    }
    let ca = tls::new_ca(cluster)?;
    std::fs::write(&cert, &ca.cert_pem)
        .with_context(|| format!("cannot write {}", cert.display()))?;
    write_secret(&dir.join(CA_KEY), &ca.key_pem)?;
    Ok(ca)
}

pub fn load_ca(dir: &Path) -> Result<CertifiedKey> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).with_context(|| {
            format!(
                "cannot read {} (run `fleet certs init --dir {}`)",
                p.display(),
                dir.display()
            )
        })
    };
    Ok(CertifiedKey {
        cert_pem: read(CA_CERT)?,
        key_pem: read(CA_KEY)?,
    })
}

/// Issues a certificate for `role` named `name` into `dir`; returns its two paths.
pub fn issue(dir: &Path, role: Role, name: &str, sans: &[String]) -> Result<(PathBuf, PathBuf)> {
    let ca = load_ca(dir)?;
    let issued = tls::issue(&ca, role, name, sans)?;
    let (cert, key) = cert_paths(dir, role, name);
    std::fs::write(&cert, &issued.cert_pem)
        .with_context(|| format!("cannot write {}", cert.display()))?;
    write_secret(&key, &issued.key_pem)?;
    Ok((cert, key))
}

/// Reads a certificate and key given as files.
pub fn load_identity(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    Ok(CertifiedKey {
        cert_pem: std::fs::read_to_string(cert)
            .with_context(|| format!("cannot read certificate {}", cert.display()))?,
        key_pem: std::fs::read_to_string(key)
            .with_context(|| format!("cannot read key {}", key.display()))?,
    })
}

pub fn parse_role(s: &str) -> Result<Role> {
    Ok(match s {
        "master" => Role::Master,
        "agent" => Role::Agent,
        "client" => Role::Client,
        other => bail!("unknown certificate kind '{other}': expected master, agent or client"),
    })
}
