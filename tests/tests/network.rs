//! Network accounting end to end: the bytes a task sends and receives are counted in the
//! kernel (cgroup_skb programs) and reach the master in the agent's usage reports.

use std::{process::Command, time::Duration};

use anyhow::{Context, Result};
use fleet_tests::{Dev, Process, fleet_bin, wait_until};

/// Bytes the task's client sends to its own server over loopback TCP.
const REQUEST: u64 = 2_000_000;
/// Bytes the server answers.
const RESPONSE: u64 = 1_000_000;

/// A server and a client in the task: the client sends REQUEST bytes, the server answers
/// RESPONSE bytes; both ends are the task's, so each byte is sent once and received once
/// by it. Then it stays up long enough for a report to carry its counters.
const EXCHANGE: &str = r"
import socket, sys, threading, time
request, response = int(sys.argv[1]), int(sys.argv[2])
server = socket.create_server(('127.0.0.1', 0))
def serve():
    conn, _ = server.accept()
    got = 0
    while got < request:
        got += len(conn.recv(65536))
    conn.sendall(b'y' * response)
    conn.close()
t = threading.Thread(target=serve)
t.start()
client = socket.create_connection(server.getsockname())
client.sendall(b'x' * request)
got = 0
while True:
    chunk = client.recv(65536)
    if not chunk:
        break
    got += len(chunk)
t.join()
print('received', got, flush=True)
time.sleep(4)
";

fn max_task_usage(state: &serde_json::Value, field: &str) -> u64 {
    state["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["usage"][field].as_u64())
        .max()
        .unwrap_or(0)
}

#[test]
fn bytes_a_task_sends_and_receives_reach_the_master() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let mut cmd = Command::new(fleet_bin());
    cmd.env("FLEET_HOME", dev.home.path()).args([
        "run",
        "--",
        "python3",
        "-c",
        EXCHANGE,
        &REQUEST.to_string(),
        &RESPONSE.to_string(),
    ]);
    let mut run = Process::spawn("fleet run", &mut cmd)?;
    let total = REQUEST + RESPONSE;
    let seen = wait_until(
        Duration::from_secs(10),
        "the task's net_rx_bytes and net_tx_bytes in /state to reach the bytes it exchanged",
        || {
            let state = dev.state()?;
            let rx = max_task_usage(&state, "net_rx_bytes");
            let tx = max_task_usage(&state, "net_tx_bytes");
            Ok((rx >= total && tx >= total).then_some((rx, tx)))
        },
    )
    .with_context(|| format!("{}\n{}", run.output(), dev.log()));
    let status = run.wait_exit(Duration::from_secs(15));
    let (rx, tx) = seen?;
    // Headers and acknowledgements add some; several times the payload would be wrong.
    assert!(
        rx < 2 * total && tx < 2 * total,
        "counted rx {rx}, tx {tx} for {total} bytes each way"
    );
    assert!(status.is_some_and(|s| s.success()), "{}", run.output());
    Ok(())
}
