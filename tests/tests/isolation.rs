//! Isolation a task sees, end to end through `fleet dev` and `fleet run`: its own PID
//! namespace, read-only cgroup filesystems, its CPU share capped by `--cpus`.

use anyhow::{Context, Result};
use fleet_tests::{Dev, sandbox_of, text};

fn stdout_of(dev: &mut Dev, args: &[&str]) -> Result<String> {
    let out = dev.run(args)?;
    let printed = text(&out);
    let context = || format!("{printed}\n{}", dev.process.seen.join("\n"));
    assert!(out.status.success(), "fleet run failed:\n{}", context());
    let sandbox = sandbox_of(&printed).with_context(context)?;
    Ok(std::fs::read_to_string(sandbox.join("stdout"))?)
}

#[test]
fn a_task_sees_only_its_own_processes() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let out = stdout_of(&mut dev, &["--", "sh", "-c", "ls /proc | grep -c '^[0-9]'"])?;
    let count: u32 = out
        .trim()
        .parse()
        .with_context(|| format!("output {out:?}"))?;
    assert!(count < 10, "{count} processes visible in /proc");
    Ok(())
}

#[test]
fn a_task_cannot_signal_the_agent_or_leave_its_cgroups() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let agent = dev.process.pid().context("the dev process has no pid")?;
    let script = format!(
        "kill -TERM {agent} 2>/dev/null; echo signal=$?; \
         echo $$ > /sys/fs/cgroup/memory/cgroup.procs 2>/dev/null; echo move=$?"
    );
    let out = stdout_of(&mut dev, &["--", "sh", "-c", &script])?;
    assert!(
        out.contains("signal=1"),
        "the agent could be signalled: {out}"
    );
    assert!(out.contains("move=") && !out.contains("move=0"), "{out}");
    // The agent lives on: the next task runs.
    let again = stdout_of(&mut dev, &["--", "echo", "alive"])?;
    assert_eq!(again.trim(), "alive");
    Ok(())
}

#[test]
fn half_a_cpu_is_half_a_cpu() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let program = "import os, time\n\
                   t0 = time.time(); c0 = os.times()\n\
                   while time.time() - t0 < 5: pass\n\
                   c1 = os.times(); wall = time.time() - t0\n\
                   print((c1.user - c0.user + c1.system - c0.system) / wall)";
    let out = stdout_of(&mut dev, &["--cpus", "0.5", "--", "python3", "-c", program])?;
    let cores: f64 = out
        .trim()
        .parse()
        .with_context(|| format!("output {out:?}"))?;
    eprintln!("a busy loop with --cpus 0.5 used {cores:.3} cores over 5 s");
    assert!(cores <= 0.55, "{cores:.3} cores used with --cpus 0.5");
    assert!(cores >= 0.1, "only {cores:.3} cores: the loop barely ran");
    Ok(())
}
