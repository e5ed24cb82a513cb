//! `fleet bench usage`: the agent's eBPF disk accounting against `du -sk`, on the same
//! sandboxes in the same run. N sandboxes, each a cgroup admitted to the real programs,
//! get M files written by a process inside the cgroup; then:
//! - eBPF: kernel CPU time spent in the disk programs while the files were written (BPF
//!   run-time statistics, enabled for the run), the time to read every container's
//!   count once (what the agent does each report), and the map memory in use;
//! - du: `du -sk` of each sandbox once (what Mesos' disk/du isolator does per container
//!   every 15 s): wall time, CPU seconds and peak memory of the du processes;
//! - accuracy: eBPF bytes against du bytes, per sandbox;
//! - detection: how long after a writer crosses a disk limit the eBPF path sees it
//!   (polled every 250 ms, as the agent does), against a 15 s du interval.
//!
//! Needs root, BPF and an ext4 work directory; everything it creates (cgroups, pins,
//! sandboxes) is removed at the end, also on error.

use std::fs::File;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fleet_agent::cgroups::{Layout, join_before_exec};
use fleet_agent::containerizer::{ContainerSpec, Isolation};
use fleet_agent::ebpf::{UsageProbes, cgroup_id_of};

/// What to run.
#[derive(Debug, Clone)]
pub struct UsageOptions {
    pub sandboxes: usize,
    pub files: usize,
    pub file_kib: usize,
    /// Where the sandboxes go (must be on ext4).
    pub work_dir: PathBuf,
}

/// Cost of one accounting path.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct PathCost {
    pub wall_ms: f64,
    pub cpu_ms: f64,
    /// Memory it holds or needed, in KiB (see the field docs of [`UsageReport`]).
    pub memory_kib: f64,
}

/// What the bench measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageReport {
    pub sandboxes: usize,
    pub files_per_sandbox: usize,
    pub file_kib: usize,
    /// Writing all files (the same for both paths).
    pub write_wall_ms: f64,
    /// Kernel time in the disk programs during the writes (BPF run-time statistics).
    pub ebpf_kernel_ms: f64,
    pub ebpf_program_runs: u64,
    /// Reading every container's count once; memory: inode entries in use x 32 B.
    pub ebpf_read: PathCost,
    /// du -sk of every sandbox once; memory: peak of the du processes' memory cgroup
    /// (their own pages and the page cache and metadata they read).
    pub du_scan: PathCost,
    /// (eBPF kernel time during the writes + one read) / one du scan, CPU: the whole cost
    /// of knowing these sandboxes' usage once.
    pub cpu_ratio: f64,
    /// One eBPF read / one du scan, CPU: the cost of each further measurement (the agent
    /// reads every second; Mesos scans every 15 s).
    pub read_ratio: f64,
    /// Largest |eBPF - du| over the sandboxes, in bytes.
    pub max_difference_bytes: i64,
    pub total_bytes_ebpf: i64,
    pub total_bytes_du: i64,
    /// From the writer crossing the limit to the eBPF path seeing it.
    pub ebpf_detection_ms: f64,
    /// Expected delay of a 15 s du poll: half the interval plus one scan.
    pub du_detection_expected_ms: f64,
    pub du_detection_worst_ms: f64,
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("fleet bench usage needs root (cgroups, BPF)")]
    NotRoot,
    #[error("{what}: {reason}")]
    Setup { what: String, reason: String },
}

fn setup(what: impl Into<String>, reason: impl ToString) -> UsageError {
    UsageError::Setup {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// Everything the run created, removed on drop in the right order.
struct Scratch {
    probes: Option<UsageProbes>,
    cgroups: Vec<PathBuf>,
    root: PathBuf,
    work: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(probes) = self.probes.take() {
            for dir in &self.cgroups {
                if let Ok(id) = cgroup_id_of(dir) {
                    let _ = probes.untrack(id);
                }
            }
            let _ = probes.unpin();
        }
        let _ = std::fs::remove_dir_all(&self.work);
        for dir in self.cgroups.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
        let _ = std::fs::remove_dir(&self.root);
    }
}

fn spec(sandbox: &Path, disk_bytes: u64) -> ContainerSpec {
    let isolation = Isolation {
        disk_bytes,
        ..Isolation::default()
    };
    ContainerSpec::for_isolation("bench", sandbox, isolation)
}

/// Runs `python3 -c program args` inside cgroup `dir`, in `cwd`; returns its stdout.
fn python_in(dir: &Path, cwd: &Path, program: &str, args: &[String]) -> Result<String, UsageError> {
    let procs = File::options()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .map_err(|e| setup(format!("open {}/cgroup.procs", dir.display()), e))?;
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(program).args(args).current_dir(cwd);
    join_before_exec(&mut cmd, &procs);
    let out = cmd.output().map_err(|e| setup("run python3", e))?;
    if !out.status.success() {
        return Err(setup(
            "writer",
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

const WRITER: &str = r"
import sys
files, size = int(sys.argv[1]), int(sys.argv[2]) * 1024
block = b'x' * size
for i in range(files):
    with open('f%d' % i, 'wb') as f:
        f.write(block)
";

const CROSSER: &str = r"
import sys, time, os
limit = int(sys.argv[1])
with open('big', 'wb') as f:
    written = 0
    while written <= limit:
        f.write(b'y' * (1 << 20))
        f.flush()
        written += 1 << 20
    print(time.monotonic())
    sys.stdout.flush()
    time.sleep(1.5)
";

/// CPU time of this thread, in ms.
fn thread_cpu_ms() -> f64 {
    // SAFETY: clock_gettime writes to the timespec we own.
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

fn monotonic_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// A memory cgroup for the du processes, so that their peak memory is measured without
/// the copy of this process they start as (a forked child's `ru_maxrss` includes its
/// parent's resident set at exec).
struct DuCgroup {
    dir: PathBuf,
    peak_file: &'static str,
}

impl DuCgroup {
    fn new(layout: &Layout, name: &str, cgroup2_root: &Path) -> Option<Self> {
        let (dir, peak_file) = match layout {
            Layout::V1 { mount, .. } => (
                mount.join("memory").join(format!("{name}-du")),
                "memory.max_usage_in_bytes",
            ),
            Layout::V2 { .. } => {
                // Best effort: the memory controller must be enabled for children.
                let _ = std::fs::write(cgroup2_root.join("cgroup.subtree_control"), "+memory");
                (cgroup2_root.join("du"), "memory.peak")
            }
        };
        std::fs::create_dir(&dir).ok()?;
        if !dir.join(peak_file).exists() {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(Self { dir, peak_file })
    }

    fn peak_kib(&self) -> Option<f64> {
        let text = std::fs::read_to_string(self.dir.join(self.peak_file)).ok()?;
        text.trim().parse::<f64>().ok().map(|b| b / 1024.0)
    }
}

impl Drop for DuCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Runs `du -sk path` (inside `memory`'s cgroup when there is one); returns the bytes it
/// reports and its CPU ms, from wait4 on that one process.
fn du(path: &Path, memory: Option<&DuCgroup>) -> Result<(i64, f64), UsageError> {
    use std::io::Read as _;
    let mut cmd = Command::new("du");
    cmd.arg("-sk")
        .arg(path)
        .stdout(std::process::Stdio::piped());
    let procs = match memory {
        Some(cgroup) => Some(
            File::options()
                .write(true)
                .open(cgroup.dir.join("cgroup.procs"))
                .map_err(|e| setup("du memory cgroup", e))?,
        ),
        None => None,
    };
    if let Some(procs) = &procs {
        join_before_exec(&mut cmd, procs);
    }
    let mut child = cmd.spawn().map_err(|e| setup("run du", e))?;
    drop(procs);
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut text)
            .map_err(|e| setup("read du", e))?;
    }
    let pid = i32::try_from(child.id()).map_err(|e| setup("du pid", e))?;
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 reaps our own child and fills both.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::wait4(pid, &mut status, 0, &mut ru) } != pid {
        return Err(setup("wait for du", std::io::Error::last_os_error()));
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    let kib: i64 = text
        .split_whitespace()
        .next()
        .and_then(|k| k.parse().ok())
        .ok_or_else(|| setup("du", format!("unexpected output {text:?}")))?;
    Ok((kib * 1024, ms(ru.ru_utime) + ms(ru.ru_stime)))
}

/// Total run time (ns) and runs of the loaded programs whose name starts with `disk_`.
fn disk_program_stats() -> (u64, u64) {
    let mut total = (0u64, 0u64);
    for info in aya::programs::loaded_programs().flatten() {
        if !info.name_as_str().is_some_and(|n| n.starts_with("disk_")) {
            continue;
        }
        let Ok(fd) = info.fd() else { continue };
        let path = format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd());
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            match (
                parts.next(),
                parts.next().and_then(|v| v.parse::<u64>().ok()),
            ) {
                (Some("run_time_ns:"), Some(v)) => total.0 += v,
                (Some("run_cnt:"), Some(v)) => total.1 += v,
                _ => {}
            }
        }
    }
    total
}

/// Enables BPF run-time statistics while alive, restoring the old setting.
struct BpfStats(String);

impl BpfStats {
    const PATH: &str = "/proc/sys/kernel/bpf_stats_enabled";
    fn enable() -> Result<Self, UsageError> {
        let old = std::fs::read_to_string(Self::PATH).map_err(|e| setup(Self::PATH, e))?;
        std::fs::write(Self::PATH, "1").map_err(|e| setup(Self::PATH, e))?;
        Ok(Self(old.trim().to_owned()))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, &self.0);
    }
}

/// Runs the bench; `progress(done, total, what)` hears about each step.
pub fn run(
    options: &UsageOptions,
    mut progress: impl FnMut(u64, u64, &str),
) -> Result<UsageReport, UsageError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(UsageError::NotRoot);
    }
    let name = format!("fleet-bench-usage-{}", std::process::id());
    let layout = Layout::detect().map_err(|e| setup("cgroups", e))?;
    let root = layout
        .cgroup2_root(&name)
        .ok_or_else(|| setup("cgroups", "no cgroup2 tree to attach the programs to"))?;
    std::fs::create_dir_all(&root).map_err(|e| setup(root.display().to_string(), e))?;
    let work = options.work_dir.join(&name);
    let mut scratch = Scratch {
        probes: None,
        cgroups: Vec::new(),
        root: root.clone(),
        work: work.clone(),
    };
    std::fs::create_dir_all(&work).map_err(|e| setup(work.display().to_string(), e))?;
    let pins = Path::new(fleet_agent::ebpf::BPFFS_ROOT)
        .join("fleet")
        .join(&name);
    let probes = UsageProbes::load_pinned_in(&pins, &root).map_err(|e| setup("eBPF", e))?;
    let stats = BpfStats::enable()?;
    let total_steps = options.sandboxes as u64 * 2 + 2;
    let mut step = 0u64;

    // Sandboxes and their cgroups, admitted.
    let mut sandboxes = Vec::new();
    for i in 0..options.sandboxes {
        let dir = root.join(format!("s{i}"));
        std::fs::create_dir(&dir).map_err(|e| setup(dir.display().to_string(), e))?;
        scratch.cgroups.push(dir.clone());
        let sandbox = work.join(format!("s{i}"));
        std::fs::create_dir(&sandbox).map_err(|e| setup(sandbox.display().to_string(), e))?;
        let id = cgroup_id_of(&dir).map_err(|e| setup(dir.display().to_string(), e))?;
        probes
            .admit(id, &spec(&sandbox, 1 << 40))
            .map_err(|e| setup("admit", e))?;
        sandboxes.push((dir, sandbox, id));
    }

    // Write phase.
    let (kernel_before, runs_before) = disk_program_stats();
    let started = Instant::now();
    let args = [options.files.to_string(), options.file_kib.to_string()];
    for (i, (dir, sandbox, _)) in sandboxes.iter().enumerate() {
        progress(
            step,
            total_steps,
            &format!("writing sandbox {}/{}", i + 1, sandboxes.len()),
        );
        python_in(dir, sandbox, WRITER, &args)?;
        step += 1;
    }
    let write_wall_ms = started.elapsed().as_secs_f64() * 1e3;
    let (kernel_after, runs_after) = disk_program_stats();
    nix::unistd::sync();

    // eBPF read: every container's count once.
    let cpu0 = thread_cpu_ms();
    let wall0 = Instant::now();
    let mut ebpf_bytes = Vec::new();
    for (_, _, id) in &sandboxes {
        let counters = probes
            .counters(*id)
            .map_err(|e| setup("read counters", e))?
            .ok_or_else(|| setup("read counters", "a sandbox is not tracked"))?;
        ebpf_bytes.push(counters.disk_bytes);
    }
    let ebpf_read = PathCost {
        wall_ms: wall0.elapsed().as_secs_f64() * 1e3,
        cpu_ms: thread_cpu_ms() - cpu0,
        memory_kib: (options.sandboxes * (options.files + 3) * 32) as f64 / 1024.0,
    };

    // du: every sandbox once.
    let memory = DuCgroup::new(&layout, &name, &root);
    let wall0 = Instant::now();
    let mut du_bytes = Vec::new();
    let mut du_cpu = 0.0;
    for (i, (_, sandbox, _)) in sandboxes.iter().enumerate() {
        progress(
            step,
            total_steps,
            &format!("du sandbox {}/{}", i + 1, sandboxes.len()),
        );
        let (bytes, cpu) = du(sandbox, memory.as_ref())?;
        du_bytes.push(bytes);
        du_cpu += cpu;
        step += 1;
    }
    let du_scan = PathCost {
        wall_ms: wall0.elapsed().as_secs_f64() * 1e3,
        cpu_ms: du_cpu,
        // NaN when no memory cgroup could measure it; printed as "-".
        memory_kib: memory
            .as_ref()
            .and_then(DuCgroup::peak_kib)
            .unwrap_or(f64::NAN),
    };
    drop(memory);

    // Detection: a writer crosses an 8 MiB limit; poll every 250 ms as the agent does.
    progress(step, total_steps, "detection");
    let limit: u64 = 8 << 20;
    let dir = root.join("cross");
    std::fs::create_dir(&dir).map_err(|e| setup(dir.display().to_string(), e))?;
    scratch.cgroups.push(dir.clone());
    let sandbox = work.join("cross");
    std::fs::create_dir(&sandbox).map_err(|e| setup(sandbox.display().to_string(), e))?;
    let id = cgroup_id_of(&dir).map_err(|e| setup(dir.display().to_string(), e))?;
    probes
        .admit(id, &spec(&sandbox, limit))
        .map_err(|e| setup("admit", e))?;
    let procs = File::options()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .map_err(|e| setup("cgroup.procs", e))?;
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(CROSSER)
        .arg(limit.to_string())
        .current_dir(&sandbox)
        .stdout(std::process::Stdio::piped());
    join_before_exec(&mut cmd, &procs);
    let child = cmd.spawn().map_err(|e| setup("run python3", e))?;
    let mut seen_at = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen_at.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        if let Ok(Some(c)) = probes.counters(id)
            && u64::try_from(c.disk_bytes).unwrap_or(0) > limit
        {
            seen_at = Some(monotonic_s());
        }
    }
    let out = child.wait_with_output().map_err(|e| setup("writer", e))?;
    let crossed: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| setup("writer", "printed no crossing time"))?;
    let seen_at = seen_at.ok_or_else(|| setup("detection", "never saw the limit crossed"))?;
    step += 1;
    progress(step, total_steps, "done");
    drop(stats);

    let max_difference_bytes = ebpf_bytes
        .iter()
        .zip(&du_bytes)
        .map(|(e, d)| (e - d).abs())
        .max()
        .unwrap_or(0);
    let ebpf_kernel_ms = kernel_after.saturating_sub(kernel_before) as f64 / 1e6;
    scratch.probes = Some(probes);
    let per_scan = du_scan.wall_ms / options.sandboxes.max(1) as f64;
    Ok(UsageReport {
        sandboxes: options.sandboxes,
        files_per_sandbox: options.files,
        file_kib: options.file_kib,
        write_wall_ms,
        ebpf_kernel_ms,
        ebpf_program_runs: runs_after.saturating_sub(runs_before),
        ebpf_read,
        du_scan,
        cpu_ratio: (ebpf_kernel_ms + ebpf_read.cpu_ms) / du_scan.cpu_ms.max(1e-3),
        read_ratio: ebpf_read.cpu_ms / du_scan.cpu_ms.max(1e-3),
        max_difference_bytes,
        total_bytes_ebpf: ebpf_bytes.iter().sum(),
        total_bytes_du: du_bytes.iter().sum(),
        ebpf_detection_ms: ((seen_at - crossed) * 1e3).max(0.0),
        du_detection_expected_ms: 7_500.0 + per_scan,
        du_detection_worst_ms: 15_000.0 + per_scan,
    })
}

/// The report as a table.
pub fn table(r: &UsageReport) -> String {
    format!(
        "{} sandboxes x {} files of {} KiB, written in {:.0} ms\n\
         \n\
         path                  wall ms    CPU ms   memory KiB\n\
         eBPF (kernel, writes)       -  {:>8.1}            -   ({} program runs)\n\
         eBPF (read all counts) {:>8.2}  {:>8.2}  {:>11.0}   (inode entries x 32 B)\n\
         du -sk (each sandbox)  {:>8.1}  {:>8.1}  {:>11.0}   (peak of du's memory cgroup)\n\
         \n\
         eBPF/du CPU ratio: {:.3} to know the usage once (kernel time of every write + one read, over one scan)\n\
         eBPF/du CPU ratio: {:.4} for each later measurement (one read over one scan)\n\
         accuracy: eBPF {} B, du {} B, largest difference in one sandbox {} B\n\
         limit crossed -> seen: eBPF {:.0} ms (250 ms poll); du every 15 s: {:.0} ms expected, {:.0} ms worst\n",
        r.sandboxes,
        r.files_per_sandbox,
        r.file_kib,
        r.write_wall_ms,
        r.ebpf_kernel_ms,
        r.ebpf_program_runs,
        r.ebpf_read.wall_ms,
        r.ebpf_read.cpu_ms,
        r.ebpf_read.memory_kib,
        r.du_scan.wall_ms,
        r.du_scan.cpu_ms,
        r.du_scan.memory_kib,
        r.cpu_ratio,
        r.read_ratio,
        r.total_bytes_ebpf,
        r.total_bytes_du,
        r.max_difference_bytes,
        r.ebpf_detection_ms,
        r.du_detection_expected_ms,
        r.du_detection_worst_ms,
    )
}
