//! The systemd units in deploy/ pass `systemd-analyze verify` with no warning, checked in
//! a scratch root that holds the system's unit tree, the units and the built binary at
//! the path the units name.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use fleet_tests::{fleet_bin, text};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[test]
fn units_pass_systemd_analyze_verify() -> Result<()> {
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    if !analyze.is_ok_and(|o| o.status.success()) {
        bail!(
            "systemd-analyze is missing (Debian: apt-get install systemd); cannot verify the units"
        );
    }
    let system_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists())
        .context("no systemd unit tree (sysinit.target) under /usr/lib or /lib")?;
    let root = tempfile::tempdir()?;
    copy_dir(system_units, &root.path().join("usr/lib/systemd/system"))?;
    let bin = root.path().join("usr/bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(fleet_bin(), bin.join("fleet"))?;
    let units = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&units)?;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(workspace().join("deploy/systemd"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "service") {
            let name = path.file_name().context("unit name")?.to_owned();
            std::fs::copy(&path, units.join(&name))?;
            names.push(Path::new("/etc/systemd/system").join(name));
        }
    }
    assert!(names.len() >= 2, "units found: {names:?}");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .args(&names)
        .output()?;
    let printed = text(&out);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{printed}"
    );
    // verify exits 0 on warnings (an unknown key, a bad value): none may be printed.
    assert!(
        printed.trim().is_empty(),
        "systemd-analyze verify warned:\n{printed}"
    );
    Ok(())
}
