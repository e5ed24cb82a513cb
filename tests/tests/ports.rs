//! Port isolation end to end: a task binds the port it was given and port 0; a bind of
//! any other port fails with EPERM, enforced in the kernel by the agent's bind programs.

use anyhow::{Context, Result};
use fleet_tests::{Dev, sandbox_of, text};

/// Binds PORT0, then the port after it (never the task's: it was given one), then port 0,
/// over IPv4 and IPv6, printing `ipv<N> bind <port>: ok` or the errno's name for each.
const BINDS: &str = r"
import errno, os, socket
given = int(os.environ['PORT0'])
other = given + 1 if given < 65535 else given - 1
for family, host, name in [(socket.AF_INET, '127.0.0.1', 'ipv4'), (socket.AF_INET6, '::1', 'ipv6')]:
    for port in [given, other, 0]:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            result = 'ok'
        except OSError as e:
            result = errno.errorcode.get(e.errno, str(e.errno))
        s.close()
        label = 'given' if port == given else 'zero' if port == 0 else 'other'
        print(f'{name} bind {label} {port}: {result}', flush=True)
";

#[test]
fn a_task_binds_its_port_and_port_0_and_gets_eperm_for_another() -> Result<()> {
    let dev = Dev::start(&[])?;
    let out = dev.run(&["--ports", "1", "--", "python3", "-c", BINDS])?;
    let printed = text(&out);
    let context = || format!("{printed}\n{}", dev.process.seen.join("\n"));
    assert!(out.status.success(), "fleet run failed:\n{}", context());
    let sandbox = sandbox_of(&printed).with_context(context)?;
    let stdout = std::fs::read_to_string(sandbox.join("stdout"))
        .with_context(|| format!("no stdout in sandbox {}\n{}", sandbox.display(), context()))?;
    let result = |family: &str, label: &str| {
        let prefix = format!("{family} bind {label} ");
        stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.rsplit_once(": "))
            .map(|(_, r)| r.to_owned())
    };
    for family in ["ipv4", "ipv6"] {
        let given = result(family, "given");
        let other = result(family, "other");
        let zero = result(family, "zero");
        assert_eq!(
            given.as_deref(),
            Some("ok"),
            "{family}: task stdout:\n{stdout}"
        );
        assert_eq!(
            other.as_deref(),
            Some("EPERM"),
            "{family}: task stdout:\n{stdout}"
        );
        assert_eq!(
            zero.as_deref(),
            Some("ok"),
            "{family}: task stdout:\n{stdout}"
        );
    }
    Ok(())
}

#[test]
fn a_task_given_no_ports_can_bind_only_port_0() -> Result<()> {
    let dev = Dev::start(&[])?;
    let script = r"
import errno, socket
for port in [31000, 0]:
    s = socket.socket()
    try:
        s.bind(('127.0.0.1', port))
        print(port, 'ok')
    except OSError as e:
        print(port, errno.errorcode.get(e.errno, e.errno))
";
    let out = dev.run(&["--", "python3", "-c", script])?;
    let printed = text(&out);
    let context = || format!("{printed}\n{}", dev.process.seen.join("\n"));
    assert!(out.status.success(), "fleet run failed:\n{}", context());
    let sandbox = sandbox_of(&printed).with_context(context)?;
    let stdout = std::fs::read_to_string(sandbox.join("stdout"))
        .with_context(|| format!("no stdout in sandbox {}", sandbox.display()))?;
    assert_eq!(stdout, "31000 EPERM\n0 ok\n", "{}", context());
    Ok(())
}
