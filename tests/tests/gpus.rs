//! GPU isolation end to end: `fleet dev --gpu-devices DIR` with NVIDIA device nodes made
//! by mknod (no driver behind them: an allowed open fails with ENXIO, a denied one with
//! EPERM). A task given one GPU opens that one, /dev/nvidiactl and /dev/nvidia-uvm, and
//! nothing else of NVIDIA's; a task without GPUs opens none of them.

use std::time::Duration;

use anyhow::{Context, Result};
use fleet_tests::{Dev, sandbox_of, text, wait_until};
use nix_free_mknod::mknod_char;

mod nix_free_mknod {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt as _;
    use std::path::Path;

    /// mknod(2) of a character device, mode 0666.
    pub fn mknod_char(path: &Path, major: u32, minor: u32) -> std::io::Result<()> {
        let c = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: a valid NUL-terminated path; makedev and mknod take plain integers.
        let r = unsafe {
            libc::mknod(
                c.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(major, minor),
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

const OPEN_ALL: &str = r"
import os, sys
for path in sys.argv[1:]:
    try:
        os.close(os.open(path, os.O_RDWR))
        print(os.path.basename(path), 'opened')
    except OSError as e:
        print(os.path.basename(path), e.errno)
";

fn results(dev: &mut Dev, gpus: &str, paths: &[String]) -> Result<String> {
    let mut args = vec!["--gpus", gpus, "--", "python3", "-c", OPEN_ALL];
    args.extend(paths.iter().map(String::as_str));
    let out = dev.run(&args)?;
    let printed = text(&out);
    let context = || format!("{printed}\n{}", dev.process.seen.join("\n"));
    assert!(out.status.success(), "fleet run failed:\n{}", context());
    let sandbox = sandbox_of(&printed).with_context(context)?;
    Ok(std::fs::read_to_string(sandbox.join("stdout"))?)
}

fn errno_of(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or("missing")
        .to_owned()
}

#[test]
fn a_task_opens_only_the_gpu_it_was_given() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for (name, major, minor) in [
        ("nvidia0", 195, 0),
        ("nvidia1", 195, 1),
        ("nvidiactl", 195, 255),
        ("nvidia-uvm", 509, 0),
    ] {
        mknod_char(&dir.path().join(name), major, minor)
            .with_context(|| format!("mknod {name} (needs root)"))?;
    }
    let gpu_dir = dir.path().display().to_string();
    let mut dev = Dev::start(&["--gpu-devices", &gpu_dir])?;
    // /state trails the agent's registration by up to one snapshot.
    wait_until(Duration::from_secs(5), "the agent to offer gpus", || {
        let total = dev.state()?["agents"][0]["total"].to_string();
        Ok(total.contains("gpus").then_some(()))
    })
    .with_context(|| dev.log())?;
    let paths: Vec<String> = ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"]
        .iter()
        .map(|n| dir.path().join(n).display().to_string())
        .collect();
    let eperm = libc::EPERM.to_string();

    let one = results(&mut dev, "1", &paths)?;
    // The lowest free minor is given first.
    assert_ne!(errno_of(&one, "nvidia0"), eperm, "{one}");
    assert_eq!(errno_of(&one, "nvidia1"), eperm, "{one}");
    assert_ne!(errno_of(&one, "nvidiactl"), eperm, "{one}");
    assert_ne!(errno_of(&one, "nvidia-uvm"), eperm, "{one}");

    let none = results(&mut dev, "0", &paths)?;
    for name in ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"] {
        assert_eq!(errno_of(&none, name), eperm, "{name}: {none}");
    }
    Ok(())
}
