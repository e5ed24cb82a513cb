//! Builds the kernel programs of ../ebpf for the BPF target with aya-build and leaves the
//! object in OUT_DIR/fleet-ebpf, which src/ebpf embeds. The agent never builds without its
//! real programs: when the build cannot run, this fails and says how to fix the machine.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

const SETUP_HINT: &str = "run scripts/setup.sh (as root) to install the eBPF toolchain";

fn main() -> ExitCode {
    match build() {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("error: cannot build the eBPF programs in ebpf/: {reason}");
            ExitCode::FAILURE
        }
    }
}

fn build() -> Result<(), String> {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .ok_or("CARGO_MANIFEST_DIR is not set")?;
    let ebpf_dir = manifest_dir.join("..").join("ebpf");
    let ebpf_dir = ebpf_dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", ebpf_dir.display()))?;

    // aya-build watches only the directory it is given; ebpf/target (a manual build)
    // must not trigger rebuilds, so list what the object depends on instead.
    for watched in [
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        "src",
        "common/Cargo.toml",
        "common/src",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            ebpf_dir.join(watched).display()
        );
    }

    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        return Err(
            "AYA_BUILD_SKIP is set, but the agent cannot work without its eBPF \
                    programs; unset it"
                .into(),
        );
    }

    let toolchain_file = ebpf_dir.join("rust-toolchain.toml");
    let toolchain = pinned_channel(&toolchain_file)?;
    check_toolchain(&toolchain)?;
    find_on_path("bpf-linker").ok_or_else(|| format!("bpf-linker is not on PATH; {SETUP_HINT}"))?;

    // aya-build runs `cargo build --package fleet-ebpf` in the current directory; ebpf/ is
    // its own workspace, outside the host one.
    env::set_current_dir(&ebpf_dir).map_err(|e| format!("{}: {e}", ebpf_dir.display()))?;
    let src_dir = ebpf_dir.join("src");
    let src_dir = src_dir
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", src_dir.display()))?;
    // The nested cargo's progress lines would come back as one warning each; errors
    // still come through.
    // SAFETY: the build script is single-threaded here; nothing reads the environment
    // concurrently.
    unsafe { env::set_var("CARGO_TERM_QUIET", "true") };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "fleet-ebpf",
            root_dir: src_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
    .map_err(|e| format!("{e:#} (if the toolchain is missing, {SETUP_HINT})"))
}

/// The `channel = "..."` of a rust-toolchain.toml.
fn pinned_channel(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .find(|value| !value.is_empty())
        .ok_or_else(|| format!("{}: no `channel = \"...\"` line", path.display()))
}

/// The pinned nightly must be installed with rust-src (for -Z build-std=core).
fn check_toolchain(toolchain: &str) -> Result<(), String> {
    let output = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--print", "sysroot"])
        .env_remove("RUSTC")
        .output()
        .map_err(|e| format!("cannot run rustup: {e}; {SETUP_HINT}"))?;
    if !output.status.success() {
        return Err(format!(
            "toolchain {toolchain} is not usable ({}); {SETUP_HINT}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let core_src = sysroot.join("lib/rustlib/src/rust/library/core");
    if !core_src.is_dir() {
        return Err(format!(
            "toolchain {toolchain} lacks the rust-src component ({} is missing); {SETUP_HINT}",
            core_src.display()
        ));
    }
    Ok(())
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
