//! Dynamic reservations end to end on `fleet dev`: `fleet reserve` takes part of the dev
//! agent for role `web`; a task in role `web` runs on the reserved resources, a task in
//! another role cannot get them; `fleet unreserve` gives them back to everyone; the Mesos
//! `/reserve` form and bad input answer as an operator would expect.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use fleet_tests::{Dev, http, text, wait_until};
use serde_json::Value;

fn agent(dev: &Dev) -> Result<Value> {
    let state = dev.state()?;
    state["agents"]
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .with_context(|| format!("no agent in /state: {state}"))
}

/// The agent's total cpus, unreserved and reserved for `role`, from its Mesos-JSON total.
fn cpus(agent: &Value, role: &str) -> f64 {
    agent["total"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == "cpus" && r["role"] == role)
        .filter_map(|r| r["scalar"]["value"].as_f64())
        .sum()
}

#[test]
fn reserved_resources_go_to_their_role_until_unreserved() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let before = agent(&dev)?;
    let id = before["id"].as_str().context("agent id")?.to_owned();
    let all = cpus(&before, "*");
    ensure!(all >= 1.0, "the dev agent has {all} cpus: {before}");

    let out = dev
        .fleet()
        .args(["reserve", &id, "cpus(web):0.5;mem(web):64"])
        .output()?;
    let said = text(&out);
    ensure!(out.status.success(), "{said}\n{}", dev.log());
    ensure!(
        said.contains("reserved cpus(web):0.5;mem(web):64"),
        "{said}"
    );
    let reserved = wait_until(Duration::from_secs(10), "the reservation in /state", || {
        let a = agent(&dev)?;
        Ok((cpus(&a, "web") == 0.5).then_some(a))
    })?;
    ensure!(cpus(&reserved, "*") == all - 0.5, "{reserved}");
    ensure!(
        reserved["reservations"][0]["resources"]
            .as_array()
            .is_some_and(|r| r.len() == 2),
        "{reserved}"
    );

    // Role web runs on its reservation.
    let out = dev.run(&[
        "--role",
        "web",
        "--cpus",
        "0.5",
        "--mem",
        "64",
        "--",
        "echo",
        "on-reservation",
    ])?;
    ensure!(out.status.success(), "{}\n{}", text(&out), dev.log());
    let state = dev.state()?;
    let task = state["completed_tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(state["tasks"].as_array().into_iter().flatten())
        .last()
        .cloned()
        .context("no task in /state")?;
    let roles: Vec<&str> = task["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["role"].as_str())
        .collect();
    ensure!(roles == ["web", "web"], "task resources: {task}");

    // Another role cannot have every cpu: part of them is web's.
    let every_cpu = format!("{all}");
    let no_offer = dev.run(&[
        "--role",
        "batch",
        "--cpus",
        &every_cpu,
        "--mem",
        "32",
        "--offer-timeout",
        "3",
        "--",
        "true",
    ])?;
    ensure!(
        no_offer.status.code() == Some(2),
        "batch got web's cpus: {}",
        text(&no_offer)
    );

    // Bad input: unreserving what is not reserved, reserving without a role.
    let out = dev
        .fleet()
        .args(["unreserve", &id, "cpus(web):4"])
        .output()?;
    ensure!(!out.status.success(), "{}", text(&out));
    ensure!(
        text(&out).contains("is not reserved dynamically"),
        "{}",
        text(&out)
    );
    let out = dev.fleet().args(["reserve", &id, "cpus:1"]).output()?;
    ensure!(text(&out).contains("names no role"), "{}", text(&out));
    let out = dev.fleet().args(["reserve", &id, "cpus(web)"]).output()?;
    ensure!(
        !out.status.success() && text(&out).contains("RESOURCES"),
        "{}",
        text(&out)
    );

    let out = dev
        .fleet()
        .args(["unreserve", &id, "cpus(web):0.5;mem(web):64"])
        .output()?;
    ensure!(out.status.success(), "{}", text(&out));
    wait_until(Duration::from_secs(10), "the reservation gone", || {
        let a = agent(&dev)?;
        Ok((cpus(&a, "web") == 0.0 && cpus(&a, "*") == all).then_some(()))
    })?;
    let out = dev.run(&[
        "--role",
        "batch",
        "--cpus",
        &every_cpu,
        "--mem",
        "32",
        "--offer-timeout",
        "20",
        "--",
        "true",
    ])?;
    ensure!(out.status.success(), "{}\n{}", text(&out), dev.log());

    // Mesos' form: POST /reserve slaveId=...&resources=[...] answers 202.
    let form = format!(
        "slaveId={id}&resources=%5B%7B%22name%22%3A%22cpus%22%2C%22type%22%3A%22SCALAR%22%2C\
         %22scalar%22%3A%7B%22value%22%3A0.25%7D%2C%22role%22%3A%22web%22%7D%5D"
    );
    let (status, body) = http(dev.addr(), "POST", "/reserve", &form)?;
    ensure!(status == 202, "{status} {body}");
    wait_until(Duration::from_secs(10), "the form reservation", || {
        Ok((cpus(&agent(&dev)?, "web") == 0.25).then_some(()))
    })?;
    let (status, body) = http(dev.addr(), "POST", "/unreserve", "slaveId=")?;
    ensure!(
        status == 400 && body.contains("slaveId=AGENT and resources="),
        "{status} {body}"
    );
    Ok(())
}
