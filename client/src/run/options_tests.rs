use super::*;
use fleet_proto::ids::{FrameworkId, OfferId};
use fleet_proto::resources::Attributes;

fn opts(command: &[&str]) -> RunOptions {
    RunOptions::new(
        "127.0.0.1:5050".parse().unwrap(),
        String::new(),
        command.iter().map(|s| s.to_string()).collect(),
    )
}

pub(crate) fn offer(role: &str, resources: &str) -> Offer {
    Offer {
        id: OfferId { shard: 0, seq: 1 },
        framework_id: FrameworkId::from("F-1"),
        agent_id: AgentId::from("A-1"),
        hostname: "host1".into(),
        role: role.into(),
        resources: Resources::parse(resources).unwrap(),
        attributes: Attributes::new(),
    }
}

#[test]
fn defaults_are_valid() {
    let req = opts(&["true"]).validate().unwrap();
    assert_eq!(req.cpus, Scalar::from_milli(100));
    assert_eq!(req.mem, Scalar::from_units(128));
    assert_eq!(req.describe(), "cpus:0.1;mem:128");
}

#[test]
fn bad_input_is_named() {
    let err = opts(&[]).validate().unwrap_err().to_string();
    assert!(err.contains("no command given"), "{err}");
    let err = opts(&["  "]).validate().unwrap_err().to_string();
    assert!(err.contains("command"), "{err}");

    for cpus in [0.0, -1.0, f64::NAN, 0.0001] {
        let mut o = opts(&["true"]);
        o.cpus = cpus;
        let err = o.validate().unwrap_err().to_string();
        assert!(err.starts_with("invalid option --cpus"), "{err}");
    }
    let mut o = opts(&["true"]);
    o.mem_mb = 0.0;
    assert!(o.validate().unwrap_err().to_string().contains("--mem"));
    let mut o = opts(&["true"]);
    o.disk_mb = Some(-5.0);
    assert!(o.validate().unwrap_err().to_string().contains("--disk"));
    let mut o = opts(&["true"]);
    o.role = Some("bad role".into());
    let err = o.validate().unwrap_err().to_string();
    assert!(
        err.contains("--role") && err.contains("'bad role'"),
        "{err}"
    );
}

#[test]
fn one_word_is_a_shell_command_several_are_argv() {
    let c = opts(&["echo hi && exit 3"]).command_info();
    assert!(c.shell);
    assert_eq!(c.value, "echo hi && exit 3");
    let c = opts(&["/bin/echo", "a b", "c"]).command_info();
    assert!(!c.shell);
    assert_eq!(c.value, "/bin/echo");
    assert_eq!(c.arguments, vec!["/bin/echo", "a b", "c"]);
}

#[test]
fn framework_info_carries_role_and_capabilities() {
    let mut o = opts(&["true"]);
    o.role = Some("eng".into());
    o.gpus = 1;
    o.partition_aware = true;
    let f = o.framework_info();
    assert_eq!(f.roles, vec!["eng"]);
    assert!(f.capabilities.gpu_resources && f.capabilities.partition_aware);
    assert!(o.new_task_id().as_str().starts_with("fleet-run-"));
}

#[test]
fn fit_takes_exactly_the_request_and_the_lowest_ports() {
    let mut o = opts(&["true"]);
    o.ports = 3;
    o.disk_mb = Some(10.0);
    let req = o.validate().unwrap();
    let offer = offer(
        "*",
        "cpus:4;mem:1024;disk:100;ports:[31000-31001,31005-31010]",
    );
    let got = req.fit(&offer).unwrap();
    assert_eq!(
        got,
        Resources::parse("cpus:0.1;mem:128;disk:10;ports:[31000-31001,31005-31005]").unwrap()
    );
    assert_eq!(got.ports().len(), 3);
}

#[test]
fn fit_refuses_what_is_short() {
    let mut o = opts(&["true"]);
    o.ports = 3;
    let req = o.validate().unwrap();
    assert!(
        req.fit(&offer("*", "cpus:4;mem:1024;ports:[31000-31001]"))
            .is_none()
    );
    assert!(
        req.fit(&offer("*", "cpus:4;mem:100;ports:[1-10]"))
            .is_none()
    );
    assert!(
        req.fit(&offer("*", "cpus:0.05;mem:1024;ports:[1-10]"))
            .is_none()
    );
    let mut o = opts(&["true"]);
    o.gpus = 1;
    let req = o.validate().unwrap();
    assert!(req.fit(&offer("*", "cpus:4;mem:1024")).is_none());
    assert!(req.fit(&offer("*", "cpus:4;mem:1024;gpus:2")).is_some());
}

#[test]
fn fit_prefers_the_role_reservation_then_unreserved() {
    let mut o = opts(&["true"]);
    o.role = Some("eng".into());
    o.ports = 1;
    let req = o.validate().unwrap();
    let offer = offer(
        "eng",
        "cpus(eng):1;mem(eng):64;mem:512;ports:[31000-31000];ports(eng):[40000-40000]",
    );
    let got = req.fit(&offer).unwrap();
    assert_eq!(
        got,
        Resources::parse("cpus(eng):0.1;mem:128;ports(eng):[40000-40000]").unwrap()
    );
}

#[test]
fn constraints_parse_into_predicates() {
    use fleet_proto::messages::scheduler::{Predicate, Selector};
    let c = parse_constraint("zone=west").unwrap();
    assert_eq!(c.selector, Selector::Attribute("zone".into()));
    assert_eq!(c.predicate, Predicate::TextEquals("west".into()));
    let c = parse_constraint("rack!=r1").unwrap();
    assert_eq!(c.predicate, Predicate::TextNotEquals("r1".into()));
    let c = parse_constraint("hostname~node-.*").unwrap();
    assert_eq!(c.selector, Selector::Hostname);
    assert_eq!(c.predicate, Predicate::TextMatches("node-.*".into()));
    assert_eq!(
        parse_constraint("gpu").unwrap().predicate,
        Predicate::Exists
    );
    assert_eq!(
        parse_constraint("!spot").unwrap().predicate,
        Predicate::NotExists
    );
    let err = parse_constraint("=west").unwrap_err();
    assert!(err.to_string().contains("--constraint"), "{err}");
    // Constraints apply to the run's role.
    let mut o = opts(&["true"]);
    o.role = Some("web".into());
    o.constraints = vec![parse_constraint("zone=west").unwrap()];
    let info = o.framework_info();
    assert_eq!(info.offer_constraints.len(), 1);
    assert_eq!(info.offer_constraints[0].role, "web");
    assert_eq!(info.offer_constraints[0].groups[0].len(), 1);
}
