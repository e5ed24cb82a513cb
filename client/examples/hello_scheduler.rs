//! A complete framework: launches three `echo` tasks and exits when all have finished.
//!
//! cargo run -p fleet-client --example hello_scheduler -- 127.0.0.1:5050 path/to/ca.pem

use std::collections::HashSet;

use anyhow::{Context, bail};
use fleet_client::{MasterEndpoint, SchedulerClient};
use fleet_proto::ids::TaskId;
use fleet_proto::messages::scheduler::{Event, Filters, FrameworkInfo};
use fleet_proto::resources::Resources;
use fleet_proto::task::{CommandInfo, TaskInfo, TaskState};

const TASKS: usize = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:5050".into());
    let ca_path = args
        .next()
        .context("usage: hello_scheduler MASTER_ADDR CA_PEM")?;
    let master = MasterEndpoint {
        addr: addr
            .parse()
            .with_context(|| format!("bad master address '{addr}'"))?,
        ca_pem: std::fs::read_to_string(&ca_path).with_context(|| format!("reading {ca_path}"))?,
    };
    let framework = FrameworkInfo {
        name: "hello".into(),
        user: "root".into(),
        ..FrameworkInfo::default()
    };
    let (client, mut events) = SchedulerClient::connect(master, framework).await?;
    println!("subscribed as {}", client.framework_id());

    let per_task = Resources::parse("cpus:0.1;mem:32")?;
    let mut launched = 0;
    let mut running: HashSet<TaskId> = HashSet::new();
    while let Some(event) = events.next().await {
        match event? {
            Event::Offers { offers } => {
                for offer in offers {
                    // Pack as many of the remaining tasks as fit into this offer.
                    let mut left = offer.resources.clone();
                    let mut tasks = Vec::new();
                    while launched < TASKS && left.contains(&per_task) {
                        left.subtract(&per_task);
                        let task_id = TaskId(format!("hello-{launched}"));
                        running.insert(task_id.clone());
                        tasks.push(TaskInfo {
                            task_id,
                            name: format!("hello {launched}"),
                            agent_id: offer.agent_id.clone(),
                            resources: per_task.clone(),
                            command: CommandInfo {
                                shell: true,
                                value: format!("echo hello from task {launched}"),
                                ..CommandInfo::default()
                            },
                            kill_grace_ms: None,
                        });
                        launched += 1;
                    }
                    if tasks.is_empty() {
                        let filters = Some(Filters {
                            refuse_seconds: 60.0,
                        });
                        client.decline(vec![offer.id], filters).await?;
                    } else {
                        println!("launching {} task(s) on {}", tasks.len(), offer.hostname);
                        client.launch(offer.id, tasks).await?;
                    }
                }
                if launched == TASKS {
                    client.suppress(vec![]).await?;
                }
            }
            Event::Update { status } => {
                println!("{} {}", status.task_id, status.state);
                client.acknowledge(&status).await?;
                if status.state.is_terminal() {
                    running.remove(&status.task_id);
                    if status.state != TaskState::Finished {
                        client.teardown().await?;
                        bail!(
                            "{} ended {}: {}",
                            status.task_id,
                            status.state,
                            status.message
                        );
                    }
                    if running.is_empty() && launched == TASKS {
                        println!("all {TASKS} tasks finished");
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    if launched < TASKS || !running.is_empty() {
        bail!("the master ended the session before all tasks finished");
    }
    client.teardown().await?;
    Ok(())
}
