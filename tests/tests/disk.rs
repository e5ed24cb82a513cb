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
