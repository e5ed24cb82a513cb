//! The web UI: one page (`ui/index.html`, `ui/app.js`, `ui/style.css`) compiled into the
//! binary and served at `/`, so an operator runs no build step and no other server. The
//! page polls `/state`; a task's stdout and stderr come through
//! `/ui/tasks/{task}/{stdout|stderr}`, which the master reads from the task's agent, so the
//! browser talks to the master alone (an agent's HTTP port is often not reachable from an
//! operator's desk, and sends no CORS headers).

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::driver::Published;
use super::snapshots::Snapshots;

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");

/// The most of a task's file one read asks of the agent; the page reads on from where a
/// read ended, so a long log arrives in pieces rather than in one slow answer.
const READ_LENGTH: u64 = 64 * 1024;
/// How long the master waits for an agent to connect and answer.
const AGENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of an agent's answer the master reads: a chunk of [`READ_LENGTH`] bytes, JSON
/// escaped, fits with room to spare.
const MAX_ANSWER: u64 = 1024 * 1024;

/// The page, its assets and the task files, with the snapshots the last ones are found in.
pub(super) fn router(published: Snapshots) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/ui/tasks/{task}/{file}", get(task_file))
        .with_state(published)
}

/// An embedded file. `no-cache`: after an upgrade the browser asks again rather than
/// running an old script against a new `/state`.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Why a task's file cannot be read: the status for the page and a message naming what.
#[derive(Debug, PartialEq)]
struct Unreadable {
    status: StatusCode,
    message: String,
}

fn unreadable(status: StatusCode, message: String) -> Unreadable {
    Unreadable { status, message }
}

impl IntoResponse for Unreadable {
    fn into_response(self) -> Response {
        (self.status, format!("{}\n", self.message)).into_response()
    }
}

/// Where a task's file lies: its agent's HTTP address and the path in the sandbox.
#[derive(Debug, PartialEq)]
struct SandboxFile {
    agent_http: String,
    path: String,
}

/// Finds `file` (stdout or stderr) of `task` the way `fleet logs` does: the sandbox from
/// the task, the address from its agent. A live task is looked for before ended ones.
fn locate(published: &Published, task: &str, file: &str) -> Result<SandboxFile, Unreadable> {
    if file != "stdout" && file != "stderr" {
        return Err(unreadable(
            StatusCode::NOT_FOUND,
            format!("no file '{file}' here: a task's 'stdout' and 'stderr' are served"),
        ));
    }
    let state = &published.state;
    let found = state
        .tasks
        .iter()
        .chain(state.completed_tasks.iter().rev())
        .find(|t| t.id.as_str() == task)
        .ok_or_else(|| {
            unreadable(
                StatusCode::NOT_FOUND,
                format!("no task '{task}' in the master's state"),
            )
        })?;
    let sandbox = found
        .sandbox
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            unreadable(
                StatusCode::NOT_FOUND,
                format!("task '{task}' has no sandbox yet (state {:?})", found.state),
            )
        })?;
    let agent_http = state
        .agents
        .iter()
        .find(|a| a.id == found.agent_id)
        .map(|a| a.http_address.as_str())
        .filter(|h| !h.is_empty() && *h != "-")
        .ok_or_else(|| {
            unreadable(
                StatusCode::BAD_GATEWAY,
                format!(
                    "task '{task}' ran on agent {}, which the master no longer knows or which \
                     has no HTTP endpoint",
                    found.agent_id
                ),
            )
        })?;
    Ok(SandboxFile {
        agent_http: agent_http.to_owned(),
        path: format!("{}/{file}", sandbox.trim_end_matches('/')),
    })
}

/// `?offset=N` of a task file read; a negative offset asks for the size only.
#[derive(serde::Deserialize)]
struct ReadFrom {
    offset: Option<i64>,
}

/// GET /ui/tasks/{task}/{file}?offset=N: the agent's `/files/read` answer,
/// `{"data": "...", "offset": N}`, passed on as it came.
async fn task_file(
    State(published): State<Snapshots>,
    Path((task, file)): Path<(String, String)>,
    Query(from): Query<ReadFrom>,
) -> Response {
    let at = match locate(&*published.fresh().await, &task, &file) {
        Ok(at) => at,
        Err(unreadable) => return unreadable.into_response(),
    };
    let target = format!(
        "/files/read?path={}&offset={}&length={READ_LENGTH}",
        percent_encode(&at.path),
        from.offset.unwrap_or(0).max(-1)
    );
    match tokio::time::timeout(AGENT_TIMEOUT, get_from_agent(&at.agent_http, &target)).await {
        Ok(Ok((200, body))) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Ok(Ok((status, body))) => unreadable(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            format!(
                "agent {} refused {}: {}",
                at.agent_http,
                at.path,
                String::from_utf8_lossy(&body).trim()
            ),
        )
        .into_response(),
        Ok(Err(e)) => unreadable(
            StatusCode::BAD_GATEWAY,
            format!("cannot read {} from agent {}: {e}", at.path, at.agent_http),
        )
        .into_response(),
        Err(_) => unreadable(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "agent {} did not answer within {AGENT_TIMEOUT:?}",
                at.agent_http
            ),
        )
        .into_response(),
    }
}

/// One GET to an agent, in HTTP/1.0 so that the answer ends where the connection does (no
/// chunked bodies to decode): its status and body.
async fn get_from_agent(agent_http: &str, target: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = tokio::net::TcpStream::connect(agent_http).await?;
    stream
        .write_all(format!("GET {target} HTTP/1.0\r\nHost: {agent_http}\r\n\r\n").as_bytes())
        .await?;
    let mut answer = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut answer).await?;
    parse_answer(&answer).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not an HTTP answer: {:?}",
                String::from_utf8_lossy(&answer[..answer.len().min(80)])
            ),
        )
    })
}

/// `HTTP/1.x NNN ...\r\n headers \r\n\r\n body` as the status and the body.
fn parse_answer(answer: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let mut status_line = head.lines().next()?.split_whitespace();
    if !status_line.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = status_line.next()?.parse().ok()?;
    Some((status, answer[end + 4..].to_vec()))
}

/// `text` for a URL's query: everything but unreserved characters and `/` as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::{AgentState, TaskView};
    use fleet_proto::resources::Resources;
    use fleet_proto::task::TaskState;

    fn agent(id: &str, http: &str) -> AgentState {
        AgentState {
            id: id.into(),
            hostname: "h".to_owned(),
            http_address: http.to_owned(),
            active: true,
            deactivated: false,
            drain: None,
            total: Resources::new(),
            reservations: Vec::new(),
            used: Resources::new(),
            offered: Resources::new(),
            tasks: 0,
            offers: Vec::new(),
            usage: None,
            last_report_seq: None,
            last_report_timestamp_ms: None,
            reports: 0,
        }
    }

    fn task(id: &str, agent: &str, sandbox: Option<&str>, state: TaskState) -> TaskView {
        TaskView {
            id: id.into(),
            name: "t".to_owned(),
            framework_id: "F-1".into(),
            agent_id: agent.into(),
            state,
            reason: None,
            message: String::new(),
            resources: Resources::new(),
            sandbox: sandbox.map(str::to_owned),
            exit_code: None,
            unacknowledged: false,
            usage: None,
            pid: None,
        }
    }

    fn published() -> Published {
        let master = crate::core::Master::new(
            crate::core::MasterConfig::default(),
            Box::new(crate::registry::InMemoryRegistry::default()),
        );
        let addr = ([127, 0, 0, 1], 5050).into();
        let mut published = Published::new(master.state(), addr, addr);
        let state = &mut published.state;
        state.agents.push(agent("A-1", "127.0.0.1:5051"));
        state.agents.push(agent("A-2", ""));
        state.tasks.push(task(
            "live",
            "A-1",
            Some("/w/slaves/A-1/run/"),
            TaskState::Running,
        ));
        state
            .tasks
            .push(task("staging", "A-1", None, TaskState::Staging));
        state
            .completed_tasks
            .push(task("done", "A-1", Some("/w/old"), TaskState::Finished));
        state
            .completed_tasks
            .push(task("done", "A-1", Some("/w/new"), TaskState::Finished));
        state
            .completed_tasks
            .push(task("elsewhere", "A-2", Some("/w/x"), TaskState::Finished));
        published
    }

    #[test]
    fn a_tasks_file_is_found_in_its_sandbox_on_its_agent() {
        let p = published();
        assert_eq!(
            locate(&p, "live", "stdout"),
            Ok(SandboxFile {
                agent_http: "127.0.0.1:5051".to_owned(),
                path: "/w/slaves/A-1/run/stdout".to_owned(),
            })
        );
        // The latest of two ended tasks with one id (a relaunch) wins.
        assert_eq!(
            locate(&p, "done", "stderr").map(|f| f.path),
            Ok("/w/new/stderr".to_owned())
        );
    }

    #[test]
    fn other_files_unknown_tasks_and_agents_without_http_are_refused_by_name() {
        let p = published();
        let refused = |task, file| locate(&p, task, file).unwrap_err();
        let other = refused("live", "../../etc/passwd");
        assert_eq!(other.status, StatusCode::NOT_FOUND);
        assert!(other.message.contains("'../../etc/passwd'"), "{other:?}");
        let unknown = refused("nope", "stdout");
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert!(unknown.message.contains("'nope'"), "{unknown:?}");
        let staging = refused("staging", "stdout");
        assert!(staging.message.contains("no sandbox"), "{staging:?}");
        let no_http = refused("elsewhere", "stdout");
        assert_eq!(no_http.status, StatusCode::BAD_GATEWAY);
        assert!(no_http.message.contains("A-2"), "{no_http:?}");
    }

    #[test]
    fn the_page_names_the_assets_served_beside_it() {
        assert!(INDEX.contains("/ui/app.js") && INDEX.contains("/ui/style.css"));
        let page = asset("text/html; charset=utf-8", INDEX);
        assert_eq!(
            page.headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"text/html; charset=utf-8"[..])
        );
        // The page works offline: nothing is fetched from anywhere but the master.
        for text in [INDEX, SCRIPT, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
    }

    #[test]
    fn paths_are_percent_encoded_for_the_query() {
        assert_eq!(percent_encode("/w/a b/é&x=1"), "/w/a%20b/%C3%A9%26x%3D1");
        assert_eq!(percent_encode("/plain/A-1_x.y~"), "/plain/A-1_x.y~");
    }

    #[test]
    fn an_answer_is_split_into_status_and_body() {
        assert_eq!(
            parse_answer(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n{}"),
            Some((200, b"{}".to_vec()))
        );
        assert_eq!(
            parse_answer(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Some((404, Vec::new()))
        );
        assert_eq!(parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(parse_answer(b"HTTP/1.0 200 OK\r\n"), None);
    }

    #[test]
    fn a_read_asks_the_agent_and_returns_its_answer() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr").to_string();
            let agent = tokio::spawn(async move {
                let (mut conn, _) = listener.accept().await.expect("accept");
                let mut asked = vec![0; 4096];
                let n = conn.read(&mut asked).await.expect("read");
                let body = r#"{"data":"hi\n","offset":0}"#;
                let answer = format!(
                    "HTTP/1.0 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(answer.as_bytes()).await.expect("write");
                String::from_utf8_lossy(&asked[..n]).into_owned()
            });
            let (status, body) = get_from_agent(&addr, "/files/read?path=/w/stdout")
                .await
                .expect("answer");
            assert_eq!(status, 200);
            assert_eq!(body, br#"{"data":"hi\n","offset":0}"#);
            let asked = agent.await.expect("agent");
            assert!(
                asked.starts_with("GET /files/read?path=/w/stdout HTTP/1.0\r\n"),
                "{asked}"
            );
        });
    }
}
