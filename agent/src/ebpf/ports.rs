//! Port isolation: the bind4/bind6 programs of ebpf/src/ports.rs, attached at the agent's
//! cgroup2 root, and the map of port ranges each container may bind. Every container has
//! an entry (an empty one when it was given no ports), so a container binds only its own
//! ports and port 0; other processes are not affected.

use std::{
    fs::File,
    path::Path,
    sync::{Mutex, MutexGuard, PoisonError},
};

use aya::{
    Ebpf,
    maps::{HashMap, MapData, MapType},
    programs::{CgroupAttachMode, CgroupSockAddr},
};
use fleet_ebpf_common::{
    MAX_TRACKED_CGROUPS,
    ports::{MAX_PORT_RANGES, PORT_RANGES_MAP, PortRanges},
};

use super::{
    error::{EbpfError, reason},
    probes::{PinnedShape, is_absent, remove_pin, replace_stale_pin},
};
use crate::containerizer::ContainerSpec;

/// The programs, one per address family.
const PROGRAMS: [&str; 2] = ["port_bind4", "port_bind6"];

/// `BPF_F_NO_PREALLOC`, as the map is declared.
const NO_PREALLOC: u32 = 1;

/// The port isolation programs (attached; they stay so while the object lives) and their
/// map.
pub(super) struct Ports {
    ranges: Mutex<HashMap<MapData, u64, PortRanges>>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

fn map_error(action: String, reason: String) -> EbpfError {
    EbpfError::Map {
        map: PORT_RANGES_MAP,
        action,
        reason,
    }
}

/// Loads program `name` of `object` and attaches it at the cgroup2 directory `cgroup`
/// (opened as `dir`), alongside any other programs there.
///
/// The attach closures pass [`CgroupAttachMode::Single`]: aya attaches through a
/// bpf_link (kernel >= 5.7), which the kernel always adds as one of many (BPF_F_ALLOW_MULTI
/// implied) and which refuses any flag with EINVAL, so `AllowMultiple` cannot be asked
/// for; other agents' and tests' programs on the same tree keep running beside these.
pub(super) fn attach_at_cgroup<P>(
    object: &mut Ebpf,
    name: &'static str,
    cgroup: &Path,
    dir: &File,
    attach: impl FnOnce(&mut P, &File) -> Result<(), aya::programs::ProgramError>,
) -> Result<(), EbpfError>
where
    for<'a> &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program_error = |reason: String| EbpfError::Program {
        program: name,
        reason,
    };
    let program: &mut P = object
        .program_mut(name)
        .ok_or_else(|| program_error("absent from the eBPF object".into()))?
        .try_into()
        .map_err(|e| program_error(reason(&e)))?;
    attach(program, dir).map_err(|e| {
        program_error(format!(
            "cannot load or attach at cgroup {}: {}",
            cgroup.display(),
            reason(&e)
        ))
    })
}

/// Opens the cgroup2 directory programs attach to.
pub(super) fn open_cgroup(program: &'static str, cgroup: &Path) -> Result<File, EbpfError> {
    File::open(cgroup).map_err(|e| EbpfError::Program {
        program,
        reason: format!("cannot open cgroup {}: {e}", cgroup.display()),
    })
}

impl Ports {
    /// Removes a pin of an older layout of the map, before the object is loaded.
    pub(super) fn prepare_pins(pin_dir: &Path) -> Result<(), EbpfError> {
        replace_stale_pin(
            pin_dir,
            &PinnedShape {
                map: PORT_RANGES_MAP,
                map_type: MapType::Hash,
                key_size: std::mem::size_of::<u64>(),
                value_size: std::mem::size_of::<PortRanges>(),
                max_entries: MAX_TRACKED_CGROUPS,
                flags: NO_PREALLOC,
            },
        )
    }

    /// Removes the pin of the map.
    pub(super) fn remove_pins(pin_dir: &Path) -> Result<(), EbpfError> {
        remove_pin(pin_dir, PORT_RANGES_MAP)
    }

    /// Loads the bind4/bind6 programs from `object`, attaches them at `cgroup2_root` (the
    /// agent's cgroup2 directory, parent of every container's) and opens the map.
    pub(super) fn load(object: &mut Ebpf, cgroup2_root: &Path) -> Result<Self, EbpfError> {
        let dir = open_cgroup(PROGRAMS[0], cgroup2_root)?;
        for name in PROGRAMS {
            attach_at_cgroup(
                object,
                name,
                cgroup2_root,
                &dir,
                |program: &mut CgroupSockAddr, dir| {
                    program.load()?;
                    program.attach(dir, CgroupAttachMode::Single)?;
                    Ok(())
                },
            )?;
        }
        let map = object
            .take_map(PORT_RANGES_MAP)
            .ok_or_else(|| map_error("find".into(), "absent from the eBPF object".into()))?;
        let ranges = HashMap::try_from(map).map_err(|e| map_error("open".into(), reason(&e)))?;
        Ok(Self {
            ranges: Mutex::new(ranges),
        })
    }

    /// Restricts the binds of container `spec` (cgroup `cgroup_id`) to its ports and port
    /// 0, before any of its processes runs. A container with no ports gets an entry too:
    /// it may bind port 0 only.
    pub(super) fn admit(&self, cgroup_id: u64, spec: &ContainerSpec) -> Result<(), EbpfError> {
        let action = || format!("admit cgroup {cgroup_id}");
        let ports = &spec.isolation.ports;
        let value = PortRanges::new(ports).ok_or_else(|| {
            map_error(
                action(),
                format!(
                    "{} port ranges given ({ports:?}); at most {MAX_PORT_RANGES} can be enforced",
                    ports.len()
                ),
            )
        })?;
        self.lock()
            .insert(cgroup_id, value, 0)
            .map_err(|e| map_error(action(), reason(&e)))
    }

    /// Removes the entry of cgroup `cgroup_id`; absent entries are fine.
    pub(super) fn forget(&self, cgroup_id: u64) -> Result<(), EbpfError> {
        match self.lock().remove(&cgroup_id) {
            Err(e) if is_absent(&e) => Ok(()),
            other => other.map_err(|e| map_error(format!("forget cgroup {cgroup_id}"), reason(&e))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<MapData, u64, PortRanges>> {
        self.ranges.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Privileged tests against the real kernel, and the set-up the network tests share: the
/// programs attached at a fresh cgroup2 directory with container cgroups below it.
#[cfg(test)]
pub(super) mod tests {
    use std::{
        collections::BTreeMap,
        fs::{self, File},
        net::TcpListener,
        path::Path,
        process::{Command, Output},
    };

    use fleet_ebpf_common::ports::MAX_PORT_RANGES;

    use crate::{
        containerizer::{ContainerSpec, Isolation},
        ebpf::{
            UsageProbes,
            tests::{PinDir, TestCgroup, unique},
        },
    };

    const EPERM: &str = "1";

    /// Loaded programs attached at `root`. Cgroups made with [`child`](Self::child) must
    /// be dropped before this (declare them after it).
    pub(in crate::ebpf) struct Attached {
        pub(in crate::ebpf) probes: UsageProbes,
        sandbox: tempfile::TempDir,
        root: TestCgroup,
        pins: PinDir,
    }

    impl Attached {
        pub(in crate::ebpf) fn new() -> Self {
            let pins = PinDir::new();
            let root = TestCgroup::new("attach-root");
            let probes = UsageProbes::load_pinned_in(&pins.0, &root.path).unwrap_or_else(|e| {
                panic!(
                    "cannot load the probes (needs root, BPF, cgroup_sock_addr and cgroup_skb \
                     programs on the cgroup2 tree, bpffs): {e}"
                )
            });
            Self {
                probes,
                sandbox: tempfile::tempdir().unwrap(),
                root,
                pins,
            }
        }

        /// Replaces the probes with a fresh load from the same pins, as an agent restart
        /// does.
        pub(in crate::ebpf) fn reload(&mut self) {
            self.probes = UsageProbes::load_pinned_in(&self.pins.0, &self.root.path).unwrap();
        }

        /// A new cgroup below the attach point.
        pub(in crate::ebpf) fn child(&self, label: &str) -> TestCgroup {
            let path = self.root.path.join(unique(label));
            fs::create_dir(&path).unwrap_or_else(|e| {
                panic!("cannot create cgroup2 directory {}: {e}", path.display())
            });
            TestCgroup { path }
        }

        /// Admits `cgroup` as a container given `ports`.
        pub(in crate::ebpf) fn admit(&self, cgroup: &TestCgroup, ports: &[(u16, u16)]) {
            self.probes
                .admit(cgroup.id(), &spec(self.sandbox.path(), ports))
                .unwrap();
        }
    }

    pub(in crate::ebpf) fn spec(sandbox: &Path, ports: &[(u16, u16)]) -> ContainerSpec {
        let isolation = Isolation {
            ports: ports.to_vec(),
            ..Isolation::default()
        };
        ContainerSpec::for_isolation("ports-test", sandbox, isolation)
    }

    /// Runs `python3 -c script args...` inside `cgroup` and returns what it printed; it
    /// must succeed.
    pub(in crate::ebpf) fn python_in(cgroup: &TestCgroup, script: &str, args: &[String]) -> String {
        let procs = File::options()
            .write(true)
            .open(cgroup.path.join("cgroup.procs"))
            .unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(script).args(args);
        crate::cgroups::join_before_exec(&mut cmd, &procs);
        let out: Output = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 (needed by this test): {e}"));
        drop(procs);
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "python3 failed: {}\n{printed}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        printed
    }

    /// Binds a TCP socket of `family` ("4" or "6") to each port, one after the other.
    const BIND: &str = r"
import socket, sys
family = socket.AF_INET6 if sys.argv[1] == '6' else socket.AF_INET
host = '::1' if sys.argv[1] == '6' else '127.0.0.1'
for port in sys.argv[2:]:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, int(port)))
        print(port, 'ok')
    except OSError as e:
        print(port, e.errno)
    s.close()
";

    /// Port -> "ok" or the errno of its bind, for binds in `cgroup`.
    fn bind_in(cgroup: &TestCgroup, family: &str, ports: &[u16]) -> BTreeMap<u16, String> {
        let mut args = vec![family.to_owned()];
        args.extend(ports.iter().map(u16::to_string));
        python_in(cgroup, BIND, &args)
            .lines()
            .filter_map(|l| {
                let (port, result) = l.split_once(' ')?;
                Some((port.parse().ok()?, result.to_owned()))
            })
            .collect()
    }

    /// A port nothing listens on now (and its neighbour, which is not in its range).
    fn free_port() -> (u16, u16) {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        (port, if port == u16::MAX { port - 1 } else { port + 1 })
    }

    fn expect(results: &BTreeMap<u16, String>, port: u16, wanted: &str, what: &str) {
        assert_eq!(
            results.get(&port).map(String::as_str),
            Some(wanted),
            "{what}: bind of port {port}; all results {results:?}"
        );
    }

    #[test]
    fn a_container_binds_only_its_ports_and_port_0() {
        let attached = Attached::new();
        let container = attached.child("ports");
        let (allowed, other) = free_port();
        attached.admit(&container, &[(allowed, allowed)]);

        for family in ["4", "6"] {
            let results = bind_in(&container, family, &[allowed, other, 0]);
            expect(&results, allowed, "ok", &format!("IPv{family}, given port"));
            expect(&results, other, EPERM, &format!("IPv{family}, other port"));
            expect(&results, 0, "ok", &format!("IPv{family}, port 0"));
        }
    }

    #[test]
    fn a_container_without_ports_binds_only_port_0() {
        let attached = Attached::new();
        let container = attached.child("noports");
        let (port, _) = free_port();
        attached.admit(&container, &[]);

        let results = bind_in(&container, "4", &[port, 0]);
        expect(&results, port, EPERM, "no ports given");
        expect(&results, 0, "ok", "no ports given, port 0");
    }

    #[test]
    fn untracked_and_forgotten_cgroups_bind_freely() {
        let attached = Attached::new();
        let untracked = attached.child("untracked");
        let forgotten = attached.child("forgotten");
        let (port, _) = free_port();
        attached.admit(&forgotten, &[]);
        expect(
            &bind_in(&forgotten, "4", &[port]),
            port,
            EPERM,
            "admitted with no ports",
        );
        attached.probes.untrack(forgotten.id()).unwrap();

        for family in ["4", "6"] {
            let what = format!("IPv{family}, untracked cgroup");
            expect(&bind_in(&untracked, family, &[port]), port, "ok", &what);
            let what = format!("IPv{family}, cgroup untracked after admission");
            expect(&bind_in(&forgotten, family, &[port]), port, "ok", &what);
        }
    }

    #[test]
    fn ranges_are_inclusive_at_both_ends() {
        let attached = Attached::new();
        let container = attached.child("range");
        let (first, _) = free_port();
        let first = first.min(u16::MAX - 3);
        attached.admit(&container, &[(first, first + 2)]);
        let results = bind_in(&container, "4", &[first, first + 2, first + 3]);
        expect(&results, first, "ok", "first port of the range");
        expect(&results, first + 2, "ok", "last port of the range");
        expect(&results, first + 3, EPERM, "port after the range");
    }

    #[test]
    fn port_ranges_survive_a_reload_from_the_same_pins() {
        let mut attached = Attached::new();
        let container = attached.child("reload");
        let (allowed, other) = free_port();
        attached.admit(&container, &[(allowed, allowed)]);
        attached.reload();
        let results = bind_in(&container, "4", &[allowed, other]);
        expect(&results, allowed, "ok", "given port, after a reload");
        expect(&results, other, EPERM, "other port, after a reload");
    }

    #[test]
    fn more_ranges_than_fit_are_refused_and_leave_nothing_behind() {
        let attached = Attached::new();
        let container = attached.child("many");
        let many: Vec<(u16, u16)> = (0..=MAX_PORT_RANGES as u16)
            .map(|i| (31000 + 2 * i, 31000 + 2 * i))
            .collect();
        let err = attached
            .probes
            .admit(container.id(), &spec(attached.sandbox.path(), &many))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("33 port ranges") && err.contains("at most 32"),
            "{err}"
        );
        assert_eq!(attached.probes.counters(container.id()).unwrap(), None);
    }
}
