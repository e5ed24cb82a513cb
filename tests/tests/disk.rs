//! Disk isolation end to end: a task's disk usage is counted in the kernel as it writes,
//! and a task past its `disk` resource is stopped with the disk-limit reason.

use std::time::{Duration, Instant};

use anyhow::Result;
use fleet_tests::{Dev, text};

#[test]
fn a_task_over_its_disk_limit_fails_with_the_disk_reason_within_seconds() -> Result<()> {
    let dev = Dev::start(&[])?;
    let started = Instant::now();
    let out = dev.run(&[
        "--disk",
        "10",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=big bs=1M count=50; sleep 30",
    ])?;
    let took = started.elapsed();
    let printed = text(&out);
    let context = || format!("{printed}\n{}", dev.process.seen.join("\n"));
    assert!(!out.status.success(), "fleet run succeeded:\n{}", context());
    let last = printed
        .lines()
        .rfind(|l| l.contains("TASK_"))
        .unwrap_or_default();
    assert!(
        last.contains("TASK_FAILED") && last.contains("REASON_CONTAINER_LIMITATION_DISK"),
        "last state line {last:?}\n{}",
        context()
    );
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} from `fleet run` to the disk-limit failure\n{}",
        context()
    );
    Ok(())
}

#[test]
fn a_task_within_its_disk_limit_finishes() -> Result<()> {
    let dev = Dev::start(&[])?;
    let out = dev.run(&[
        "--disk",
        "10",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=small bs=1M count=5 status=none && sync small && sleep 1.5",
    ])?;
    let printed = text(&out);
    assert!(
        out.status.success(),
        "fleet run failed:\n{printed}\n{}",
        dev.process.seen.join("\n")
    );
    Ok(())
}

#[test]
fn a_tasks_disk_usage_reaches_the_master_in_its_reports() -> Result<()> {
    use std::process::Command;

    use anyhow::Context;
    use fleet_tests::{Process, fleet_bin, wait_until};

    let mut dev = Dev::start(&[])?;
    let mut cmd = Command::new(fleet_bin());
    cmd.env("FLEET_HOME", dev.home.path()).args([
        "run",
        "--disk",
        "64",
        "--",
        "sh",
        "-c",
        "head -c 3000000 /dev/zero > f && sleep 4",
    ]);
    let mut run = Process::spawn("fleet run", &mut cmd)?;
    let seen = wait_until(
        Duration::from_secs(8),
        "the task's disk_bytes in /state to reach 3 MB",
        || {
            let state = dev.state()?;
            let disk = state["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["usage"]["disk_bytes"].as_u64())
                .max();
            Ok(disk.filter(|d| *d >= 3_000_000))
        },
    )
    .with_context(|| dev.log());
    let status = run.wait_exit(Duration::from_secs(15));
    let seen = seen?;
    assert!(seen < 3_200_000, "counted {seen} bytes for a 3 MB file");
    assert!(status.is_some_and(|s| s.success()), "{}", run.output());
    Ok(())
}
