//! The master's web UI in a real browser: `fleet dev` runs a task to TASK_FINISHED, then
//! headless Chromium (Debian's `chromium` package, which scripts/setup.sh installs) loads
//! the master's `/`. The DOM it renders must show the dev agent as active and the finished
//! task, and the task's page its stdout and stderr. Screenshots of both pages are written to
//! `<target>/web_ui/` for a person to look at.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fleet_tests::{Dev, text, wait_until};
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
/// How long one browser run may take before it is killed.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);
/// Page time the browser runs before it dumps or shoots: the page polls every 1.5 s, so
/// this covers a few polls and the log reads. Virtual time stands still while a request is
/// in flight, so a slow master only makes the run longer, never the page emptier.
const PAGE_TIME: &str = "--virtual-time-budget=6000";

fn chromium_present() -> Result<()> {
    if !Path::new(CHROMIUM).exists() {
        bail!(
            "{CHROMIUM} not found: the web UI test needs Debian's `chromium` package; \
             scripts/setup.sh installs it (or `apt-get install --no-install-recommends chromium`)"
        );
    }
    Ok(())
}

/// Where the screenshots go: `web_ui/` in the target dir this test was built into
/// (`<target>/debug/deps/web_ui-HASH`).
fn screenshot_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .ancestors()
        .nth(3)
        .with_context(|| format!("no target dir above {}", exe.display()))?;
    let dir = target.join("web_ui");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs headless Chromium on `url` with `flags`, in a profile of its own; what it printed
/// on stdout. Chromium starts helper processes, so it runs in a process group of its own,
/// and the whole group is killed if it has not exited within [`BROWSER_TIMEOUT`].
fn chromium(url: &str, flags: &[&str]) -> Result<String> {
    let profile = tempfile::tempdir()?;
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(flags)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {CHROMIUM}"))?;
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .map(|stream| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut s) = stream {
                let _ = s.read_to_end(&mut out);
            }
            String::from_utf8_lossy(&out).into_owned()
        })
    })
    .collect();
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // SAFETY: kill(2) on the process group of a child this test started (its pid
            // leads the group, from process_group(0)) and has not reaped.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = readers.into_iter().map(|r| r.join().unwrap_or_default());
    let (stdout, stderr) = (
        out.next().unwrap_or_default(),
        out.next().unwrap_or_default(),
    );
    match status {
        None => {
            bail!("chromium {flags:?} {url} did not exit within {BROWSER_TIMEOUT:?}:\n{stderr}")
        }
        Some(s) if !s.success() => bail!("chromium {flags:?} {url} failed ({s}):\n{stderr}"),
        Some(_) => Ok(stdout),
    }
}

/// The text inside the element with `id`, as the dumped DOM has it (escaped HTML).
fn element_text<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let open = at + dom[at..].find('>')? + 1;
    let close = open + dom[open..].find("</")?;
    Some(&dom[open..close])
}

/// Shoots `url` into `path` and checks a PNG came out that is more than a blank page.
fn screenshot(url: &str, path: &Path) -> Result<()> {
    let _ = std::fs::remove_file(path);
    chromium(
        url,
        &[
            PAGE_TIME,
            "--window-size=1400,1000",
            &format!("--screenshot={}", path.display()),
        ],
    )?;
    let png =
        std::fs::read(path).with_context(|| format!("no screenshot at {}", path.display()))?;
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    // A blank 1400x1000 page compresses to a few KiB; the overview with its tables is
    // tens of KiB.
    assert!(
        png.len() > 20_000,
        "{} is only {} bytes: an empty page?",
        path.display(),
        png.len()
    );
    println!("screenshot: {}", path.display());
    Ok(())
}

#[test]
fn the_web_ui_shows_the_dev_agent_a_finished_task_and_its_output() -> Result<()> {
    chromium_present()?;
    let shots = screenshot_dir()?;
    let mut dev = Dev::start(&[])?;
    let out = dev.run(&["--", "sh", "-c", "echo hi; echo oops >&2"])?;
    let printed = text(&out);
    assert!(out.status.success(), "{printed}\n{}", dev.log());
    let task = printed
        .lines()
        .find(|l| l.contains(" launching on agent "))
        .and_then(|l| l.split_whitespace().nth(1))
        .with_context(|| format!("no task id in:\n{printed}"))?
        .to_owned();
    // /state is a snapshot that may trail the run by a moment.
    let state = wait_until(
        Duration::from_secs(10),
        "the finished task in /state",
        || {
            let state = dev.state()?;
            let done = state["completed_tasks"]
                .as_array()
                .is_some_and(|l| l.iter().any(|t| t["id"] == task.as_str()));
            Ok(done.then_some(state))
        },
    )
    .with_context(|| dev.log())?;
    let agent: &Value = &state["agents"][0];
    let agent_id = agent["id"].as_str().context("no agent in /state")?;
    let hostname = agent["hostname"]
        .as_str()
        .context("agent without hostname")?;
    let page = format!("http://127.0.0.1:{}/", dev.port);

    let dom = chromium(&page, &[PAGE_TIME, "--dump-dom"])?;
    for needle in [
        agent_id.to_owned(),
        format!("<td>{hostname}</td>"),
        ">active</span>".to_owned(),
        task.clone(),
        ">TASK_FINISHED</span>".to_owned(),
        "live · updated".to_owned(),
    ] {
        assert!(
            dom.contains(&needle),
            "the overview lacks '{needle}':\n{dom}"
        );
    }

    let task_page = format!("{page}#/tasks/{task}");
    let dom = chromium(&task_page, &[PAGE_TIME, "--dump-dom"])?;
    assert_eq!(element_text(&dom, "stdout"), Some("hi\n"), "{dom}");
    assert_eq!(element_text(&dom, "stderr"), Some("oops\n"), "{dom}");
    assert!(dom.contains(">TASK_FINISHED</span>"), "{dom}");

    // The agent's page lists its reservations, with who made a dynamic one.
    let out = dev
        .fleet()
        .args(["reserve", agent_id, "cpus(web):0.5"])
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    let agent_page = format!("{page}#/agents/{agent_id}");
    let dom = wait_until(
        Duration::from_secs(20),
        "the reservation on the agent's page",
        || {
            let dom = chromium(&agent_page, &[PAGE_TIME, "--dump-dom"])?;
            Ok(dom.contains("dynamic, by (no principal)").then_some(dom))
        },
    )?;
    assert!(dom.contains("<td>web</td>"), "{dom}");

    screenshot(&page, &shots.join("overview.png"))?;
    screenshot(&task_page, &shots.join("task.png"))?;
    screenshot(&agent_page, &shots.join("agent.png"))?;
    Ok(())
}
