//! Where `fleet dev` leaves its address and throwaway CA, so that `fleet run` and
//! `fleet status` need no flags: `$FLEET_HOME/dev.toml` (FLEET_HOME defaults to ~/.fleet).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The default master address, as in Mesos.
pub const DEFAULT_MASTER: &str = "127.0.0.1:5050";

pub fn fleet_home() -> PathBuf {
    if let Ok(home) = std::env::var("FLEET_HOME") {
        return PathBuf::from(home);
    }
    let base = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    Path::new(&base).join(".fleet")
}

fn profile_path() -> PathBuf {
    fleet_home().join("dev.toml")
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct DevProfile {
    pub master: String,
    pub http: String,
    pub ca: PathBuf,
    pub work_dir: PathBuf,
    pub pid: u32,
}

impl DevProfile {
    pub fn write(&self) -> Result<PathBuf> {
        let path = profile_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = toml::to_string(self).context("cannot encode the dev profile")?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    /// The profile of a running `fleet dev`, if there is one.
    pub fn read() -> Option<DevProfile> {
        let text = std::fs::read_to_string(profile_path()).ok()?;
        toml::from_str(&text).ok()
    }

    pub fn remove() {
        let _ = std::fs::remove_file(profile_path());
    }
}

/// Master address and CA for a client command: flags, else the dev profile, else defaults.
pub fn client_target(
    master: Option<String>,
    ca: Option<PathBuf>,
) -> Result<(String, Option<String>)> {
    let profile = DevProfile::read();
    let master = master
        .or_else(|| profile.as_ref().map(|p| p.master.clone()))
        .unwrap_or_else(|| DEFAULT_MASTER.to_owned());
    let ca_path = ca.or_else(|| profile.as_ref().map(|p| p.ca.clone()));
    let ca_pem =
        match ca_path {
            Some(p) => Some(std::fs::read_to_string(&p).with_context(|| {
                format!("cannot read the cluster CA certificate {}", p.display())
            })?),
            None => None,
        };
    Ok((master, ca_pem))
}
