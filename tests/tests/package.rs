//! The Debian package (`[package.metadata.deb]` in cli/Cargo.toml, built for operators by
//! scripts/deb.sh) puts the binary, the units, the example configs (as conffiles) and the
//! docs where the units and deploy/README.md say; unpacked, its units pass `systemd-analyze
//! verify` and its binary runs. Its maintainer scripts reload systemd, never enable or start
//! a unit, and on an upgrade restart the agent only if it was running.
//!
//! It packages the debug binary the other tests use (cargo-deb `--no-build` over a scratch
//! target dir), so no release build runs and the test takes seconds.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use fleet_tests::{fleet_bin, output_within, text, workspace};

const SCRIPTS: [&str; 3] = ["postinst", "prerm", "postrm"];
const UNITS: [&str; 2] = ["fleet-master.service", "fleet-agent.service"];

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn run(cmd: &mut Command) -> Result<Output> {
    let out = output_within(cmd, Duration::from_secs(60))?;
    ensure!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    Ok(out)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the package from `fleet_bin()` in `dir` and returns its path.
fn build_deb(dir: &Path) -> Result<PathBuf> {
    let probe = Command::new(cargo()).args(["deb", "--version"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        bail!(
            "cargo-deb is missing: run `cargo install cargo-deb --locked` \
             (scripts/setup.sh installs it)"
        );
    }
    // cargo-deb takes the binary from <target dir>/release/fleet: a scratch target dir
    // holding the debug binary there lets it package without building anything.
    let release = dir.join("target/release");
    std::fs::create_dir_all(&release)?;
    let bin = release.join("fleet");
    if std::fs::hard_link(fleet_bin(), &bin).is_err() {
        std::fs::copy(fleet_bin(), &bin)?;
    }
    let out = run(Command::new(cargo())
        .args(["deb", "-p", "fleet", "--no-build", "--no-strip", "--fast"])
        .arg("--output")
        .arg(dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .current_dir(workspace()))?;
    // cargo-deb prints the package's path last.
    let deb = stdout(&out)
        .lines()
        .last()
        .map(|l| PathBuf::from(l.trim()))
        .context("cargo deb printed nothing")?;
    ensure!(deb.is_file(), "cargo deb printed {deb:?}, not a file");
    Ok(deb)
}

/// `dpkg-deb --contents`: each path (without the leading `.`) with its mode string and
/// owner.
fn contents(deb: &Path) -> Result<BTreeMap<String, (String, String)>> {
    let out = run(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    let mut files = BTreeMap::new();
    for line in stdout(&out).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [mode, owner, _size, _date, _time, path] = fields[..] {
            let path = path.trim_start_matches('.').to_owned();
            files.insert(path, (mode.to_owned(), owner.to_owned()));
        }
    }
    Ok(files)
}

/// The unit's ExecStart= command line, split on whitespace.
fn exec_start(unit: &str) -> Vec<String> {
    unit.lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .map(|cmd| cmd.split_whitespace().map(str::to_owned).collect())
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

/// `systemd-analyze verify` of the package's units inside `root` (the unpacked package),
/// with the system's own unit tree copied in for the targets they name.
fn verify_units(root: &Path) -> Result<()> {
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
    copy_dir(system_units, &root.join("usr/lib/systemd/system"))?;
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(UNITS.map(|u| format!("/lib/systemd/system/{u}")))
        .output()?;
    let printed = text(&out);
    ensure!(
        out.status.success() && printed.trim().is_empty(),
        "systemd-analyze verify of the packaged units failed or warned:\n{printed}"
    );
    Ok(())
}

#[test]
fn package_holds_binary_units_conffiles_and_docs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let deb = build_deb(dir.path())?;
    let version = env!("CARGO_PKG_VERSION");

    let info = stdout(&run(Command::new("dpkg-deb").arg("--info").arg(&deb))?);
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(field("Package"), "fleet", "{info}");
    assert_eq!(field("Version"), format!("{version}-1"), "{info}");
    assert!(
        field("Depends").contains("libc6"),
        "Depends lacks libc6 (cargo-deb's $auto needs dpkg-shlibdeps: apt-get install \
         dpkg-dev):\n{info}"
    );
    let conffiles = run(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles"))?;
    let mut conffiles: Vec<String> = stdout(&conffiles).lines().map(str::to_owned).collect();
    conffiles.sort();
    assert_eq!(
        conffiles,
        ["/etc/fleet/agent.toml", "/etc/fleet/master.toml"]
    );

    let files = contents(&deb)?;
    let expected = [
        ("/usr/bin/fleet", "-rwxr-xr-x"),
        ("/lib/systemd/system/fleet-master.service", "-rw-r--r--"),
        ("/lib/systemd/system/fleet-agent.service", "-rw-r--r--"),
        ("/etc/fleet/master.toml", "-rw-r--r--"),
        ("/etc/fleet/agent.toml", "-rw-r--r--"),
        ("/usr/share/doc/fleet/README.md", "-rw-r--r--"),
        ("/usr/share/doc/fleet/copyright", "-rw-r--r--"),
        ("/usr/share/doc/fleet/examples/prometheus.yml", "-rw-r--r--"),
        (
            "/usr/share/doc/fleet/examples/grafana-fleet.json",
            "-rw-r--r--",
        ),
    ];
    for (path, mode) in expected {
        let found = files.get(path);
        assert_eq!(
            found.map(|(m, o)| (m.as_str(), o.as_str())),
            Some((mode, "0/0")),
            "{path} in the package: {files:#?}"
        );
    }

    // The maintainer scripts are deploy/debian's, executable.
    let control = dir.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control))?;
    for name in SCRIPTS {
        let packaged = control.join(name);
        let source = workspace().join("deploy/debian").join(name);
        assert_eq!(
            std::fs::read_to_string(&packaged)?,
            std::fs::read_to_string(&source)?,
            "{name} in the package differs from {}",
            source.display()
        );
        let mode = std::fs::metadata(&packaged)?.permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{name} is not executable: {mode:o}");
    }

    // Unpacked, the units start a binary and read a config the package holds.
    let root = dir.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    for (unit, config) in UNITS.into_iter().zip(["master.toml", "agent.toml"]) {
        let text = std::fs::read_to_string(root.join("lib/systemd/system").join(unit))?;
        assert_eq!(
            text,
            std::fs::read_to_string(workspace().join("deploy/systemd").join(unit))?
        );
        let argv = exec_start(&text);
        let bin = argv.first().map(|b| root.join(b.trim_start_matches('/')));
        assert!(
            bin.as_ref().is_some_and(|b| b.is_file()),
            "{unit}: ExecStart {argv:?} names no binary of the package"
        );
        let config_arg = argv.windows(2).find(|w| w[0] == "--config").map(|w| &w[1]);
        assert_eq!(
            config_arg.map(String::as_str),
            Some(format!("/etc/fleet/{config}").as_str()),
            "{unit}: ExecStart {argv:?}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("etc/fleet").join(config))?,
            std::fs::read_to_string(workspace().join("deploy/config").join(config))?
        );
    }
    verify_units(&root)?;
    let printed = stdout(&run(
        Command::new(root.join("usr/bin/fleet")).arg("--version")
    )?);
    assert_eq!(printed.trim(), format!("fleet {version}"));
    Ok(())
}

/// Runs the maintainer script `name` of deploy/debian with `args` against `root`
/// (DPKG_ROOT) and a `systemctl` that records its arguments (`is-active` answers
/// `active`); returns the systemctl calls and what the script printed.
fn maintainer_script(
    root: &Path,
    name: &str,
    args: &[&str],
    active: bool,
) -> Result<(Vec<String>, String)> {
    let bin = root.join("fake-bin");
    let log = root.join("systemctl.log");
    std::fs::create_dir_all(&bin)?;
    let systemctl = bin.join("systemctl");
    std::fs::write(
        &systemctl,
        "#!/bin/sh\necho \"$*\" >> \"$FAKE_SYSTEMCTL_LOG\"\n\
         case \"$*\" in *is-active*) exit \"$FAKE_IS_ACTIVE\" ;; esac\n",
    )?;
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755))?;
    let _ = std::fs::remove_file(&log);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH")?);
    let out = run(Command::new("sh")
        .arg(workspace().join("deploy/debian").join(name))
        .args(args)
        .env("PATH", path)
        .env("DPKG_ROOT", root)
        .env("FAKE_SYSTEMCTL_LOG", &log)
        .env("FAKE_IS_ACTIVE", if active { "0" } else { "3" }))?;
    let calls = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    Ok((calls, text(&out)))
}

#[test]
fn maintainer_scripts_reload_systemd_and_never_start_units() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let certs = root.join("etc/fleet/certs");

    // Without systemd running (a container, a chroot), nothing is asked of it.
    let (calls, printed) = maintainer_script(root, "postinst", &["configure"], false)?;
    assert_eq!(calls, Vec::<String>::new());
    assert!(printed.contains("not enabled"), "{printed}");
    let mode = std::fs::metadata(&certs)?.permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "/etc/fleet/certs mode {mode:o}");

    std::fs::create_dir_all(root.join("run/systemd/system"))?;
    // First install: systemd re-reads its units; nothing is enabled or started.
    let (calls, _) = maintainer_script(root, "postinst", &["configure"], false)?;
    assert_eq!(calls, ["--system daemon-reload"]);

    // Upgrade: the agent is restarted only if running (try-restart); the master is left to
    // the operator, who is told when it still runs the old binary.
    let (calls, printed) = maintainer_script(root, "postinst", &["configure", "0.0.1-1"], true)?;
    assert_eq!(
        calls,
        [
            "--system daemon-reload",
            "try-restart fleet-agent.service",
            "--quiet is-active fleet-master.service"
        ]
    );
    assert!(
        printed.contains("systemctl restart fleet-master"),
        "{printed}"
    );
    let (calls, printed) = maintainer_script(root, "postinst", &["configure", "0.0.1-1"], false)?;
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(!printed.contains("fleet-master"), "{printed}");

    // The old package's prerm on upgrade stops nothing.
    let (calls, _) = maintainer_script(root, "prerm", &["upgrade", "0.2.0-1"], true)?;
    assert_eq!(calls, Vec::<String>::new());

    // Removal stops (SIGTERM: tasks keep running) and disables both; purge reloads and
    // removes the certificate directory only if it is empty.
    let (calls, _) = maintainer_script(root, "prerm", &["remove"], true)?;
    assert_eq!(
        calls,
        [
            "stop fleet-agent.service",
            "disable --quiet fleet-agent.service",
            "stop fleet-master.service",
            "disable --quiet fleet-master.service"
        ]
    );
    std::fs::write(certs.join("ca.pem"), "kept")?;
    let (calls, _) = maintainer_script(root, "postrm", &["purge"], false)?;
    assert_eq!(calls, ["--system daemon-reload"]);
    assert!(certs.join("ca.pem").exists(), "purge removed a certificate");
    std::fs::remove_file(certs.join("ca.pem"))?;
    maintainer_script(root, "postrm", &["purge"], false)?;
    assert!(!root.join("etc/fleet").exists(), "empty /etc/fleet kept");
    Ok(())
}
