//! Tests across the resource model: both syntaxes, the arithmetic, serde and rkyv.

use super::*;

mod properties;

fn res(text: &str) -> Resources {
    Resources::parse(text).unwrap()
}

fn err(text: &str) -> String {
    Resources::parse(text).unwrap_err().to_string()
}

fn plus(a: &Resources, b: &Resources) -> Resources {
    let mut out = a.clone();
    out += b;
    out
}

fn minus(a: &Resources, b: &Resources) -> Resources {
    let mut out = a.clone();
    out -= b;
    out
}

fn s(text: &str) -> Scalar {
    text.parse().unwrap()
}

const AGENT: &str =
    "cpus:24;mem:24576;disk:409600;ports:[21000-24000,30000-34000];gpus:2;bugs(debug_role):{a,b,c}";

#[test]
fn parses_the_mesos_example() {
    let r = res(AGENT);
    assert_eq!(r.cpus(), s("24"));
    assert_eq!(r.mem_mb(), s("24576"));
    assert_eq!(r.disk_mb(), s("409600"));
    assert_eq!(r.gpus(), s("2"));
    assert_eq!(
        r.ports(),
        Ranges::parse("[21000-24000,30000-34000]").unwrap()
    );
    assert_eq!(r.set("bugs"), vec!["a", "b", "c"]);
    assert_eq!(r.reserved("debug_role").len(), 1);
    assert_eq!(r.unreserved().len(), 5);
    assert_eq!(r.reservation_roles(), vec!["debug_role"]);
    assert_eq!(res(&r.to_string()), r);
}

#[test]
fn text_details() {
    assert!(res("").is_empty());
    assert!(res(" ; ;").is_empty());
    assert_eq!(res("cpus:1;cpus:0.5"), res("cpus:1.5"));
    assert_eq!(res("cpus:1.5").to_string(), "cpus:1.5");
    assert_eq!(res("cpus:0;mem:0.0004;ports:[];s:{}").to_string(), "");
    assert_eq!(
        res(" cpus ( web ) : 2 \n mem:3").to_string(),
        "cpus(web):2;mem:3"
    );
    assert_eq!(res("cpus(eng/fe):1").reserved("eng/fe").cpus(), s("1"));
    assert_eq!(res("s:{b,a,,b}").set("s"), vec!["a", "b"]);
    assert_eq!(
        res("ports:[1-2];ports:[3-4]").ports(),
        Ranges::from_range(1, 4)
    );
    let r = Resources::parse_with_role("cpus:1;mem(*):2", "web").unwrap();
    assert_eq!(r.to_string(), "cpus(web):1;mem:2");
    assert!(Resources::parse_with_role("cpus:1", "a b").is_err());
    assert_eq!("cpus:2".parse::<Resources>().unwrap().cpus(), s("2"));
}

#[test]
fn text_errors_name_the_token() {
    assert_eq!(
        err("cpus:abc"),
        "invalid resource 'cpus:abc': 'abc' is not a number"
    );
    assert_eq!(
        err("ports:[5-1]"),
        "invalid range '[5-1]' in 'ports:[5-1]': begin 5 > end 1"
    );
    assert_eq!(
        err("mem:1;ports:[1-2,9-x]"),
        "invalid range '[9-x]' in 'ports:[1-2,9-x]': 'x' is not a number"
    );
    assert_eq!(
        err("cpus:-1"),
        "invalid resource 'cpus:-1': '-1' is negative: a scalar must be >= 0"
    );
    assert!(err("cpus").contains("'cpus': missing ':'"));
    assert!(err("cpus:1:2").contains("extra ':'"));
    assert!(err("cpus:").contains("missing value"));
    assert!(err(":1").contains("missing name"));
    assert!(err("cpus(web:1").contains("mismatched parentheses"));
    assert!(err("cpus(web)x:1").contains("'x' after the role"));
    assert!(err("cpus():1").contains("invalid role ''"));
    assert!(err("cpus(a b):1").contains("invalid role 'a b'"));
    assert!(err("c pu:1").contains("'c pu'"));
    assert!(err("cpus:NaN").contains("'NaN' is not a number"));
    assert!(err("s:{a,b").contains("'{a,b'"));
    assert!(err("s:{a}b}").contains("'a}b'"));
    assert_eq!(
        err("ports:5"),
        "invalid resource 'ports:5': 'ports' must be RANGES, not SCALAR"
    );
    assert_eq!(
        err("cpus:[1-2]"),
        "invalid resource 'cpus:[1-2]': 'cpus' must be SCALAR, not RANGES"
    );
    assert_eq!(
        err("x:1;x:[1-2]"),
        "invalid resources: 'x' is given as both SCALAR and RANGES"
    );
    assert!(err("x:600000000000;x:600000000000").contains("the sum is too large"));
    assert_eq!(
        err("x(r):1;x:{a}"),
        "invalid resources: 'x' is given as both SCALAR and SET"
    );
}

#[test]
fn arithmetic_is_role_aware() {
    let total = res("cpus:4;mem:1024;cpus(web):2;ports:[31000-31010]");
    assert!(total.contains(&res("cpus:4;mem:1024")));
    assert!(!total.contains(&res("cpus:5")));
    assert!(total.contains(&res("cpus(web):2")));
    assert!(!total.contains(&res("cpus(web):3")));
    assert!(!total.contains(&res("cpus(db):1")));
    assert!(!res("cpus(web):8").contains(&res("cpus:1")));
    assert!(res("ports:[31000-31001]").fits_in(&total));
    assert!(!res("ports:[30999-31001]").fits_in(&total));
    assert_eq!(total.cpus(), s("6"));

    let left = total
        .checked_sub(&res("cpus:1.5;ports:[31005-31005]"))
        .unwrap();
    assert_eq!(
        left.to_string(),
        "cpus:2.5;cpus(web):2;mem:1024;ports:[31000-31004,31006-31010]"
    );
    assert_eq!(total.checked_sub(&res("cpus(db):1")), None);
    assert_eq!(plus(&left, &res("cpus:1.5;ports:[31005-31005]")), total);
    let mut in_place = total.clone();
    in_place.subtract_or_clear(&res("cpus:1.5;ports:[31005-31005]"));
    assert_eq!(in_place, left);
    in_place.subtract_or_clear(&res("cpus(db):1"));
    assert!(in_place.is_empty());

    let mut x = res("cpus:1;mem:10");
    x -= &res("cpus:3;disk:5");
    assert_eq!(x, res("mem:10"));
    x += res("mem:5");
    x.add(&res("cpus:1"));
    assert_eq!(x, res("cpus:1;mem:15"));
    x.subtract(&res("cpus:1"));
    assert_eq!(minus(&x, &res("mem:15")), Resources::new());
    let sum: Resources = [res("cpus:1"), res("cpus:2")].iter().sum();
    assert_eq!(sum, res("cpus:3"));
}

#[test]
fn roles_and_flattening() {
    let r = res("cpus:1;cpus(eng):2;cpus(eng/fe):4;cpus(db):8;mem(eng):5");
    assert_eq!(r.allocatable_to("eng/fe").cpus(), s("7"));
    assert_eq!(r.allocatable_to("eng").cpus(), s("3"));
    assert_eq!(r.allocatable_to("other").cpus(), s("1"));
    assert_eq!(r.flatten(), res("cpus:15;mem:5"));
    assert_eq!(r.with_role("x"), res("cpus(x):15;mem(x):5"));
    assert_eq!(r.all_reserved().cpus(), s("14"));
    assert_eq!(r.unreserved(), res("cpus:1"));
    assert_eq!(r.filter(|e| e.name == "mem"), res("mem(eng):5"));
    let mixed = res("cpus:1;mem:2;ports:[1-1]");
    let scalars: Vec<_> = mixed.scalars().collect();
    assert_eq!(scalars, vec![("cpus", "*", s("1")), ("mem", "*", s("2"))]);
    let mut built = Resources::from(Resource::scalar("cpus", s("1")));
    built.push(Resource::ranges("ports", Ranges::from_range(5, 6)).with_role("web"));
    built.push(Resource::set("zones", ["b", "a"]));
    built.push(Resource::scalar("gpus", Scalar::from_milli(-5)));
    assert_eq!(built, res("cpus:1;ports(web):[5-6];zones:{a,b}"));
}

#[test]
fn json_form() {
    let r = res("cpus:1.5;mem:1024;ports:[1-2,4-4];bugs(debug_role):{a,b}");
    let json = r.to_json_value();
    assert_eq!(
        json,
        serde_json::json!([
            {"name":"bugs","type":"SET","set":{"item":["a","b"]},"role":"debug_role"},
            {"name":"cpus","type":"SCALAR","scalar":{"value":1.5},"role":"*"},
            {"name":"mem","type":"SCALAR","scalar":{"value":1024},"role":"*"},
            {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":1,"end":2},{"begin":4,"end":4}]},"role":"*"},
        ])
    );
    assert_eq!(Resources::from_json_value(json.clone()).unwrap(), r);
    assert_eq!(Resources::parse(&json.to_string()).unwrap(), r);
    assert_eq!(serde_json::from_value::<Resources>(json).unwrap(), r);

    // Mesos' own output: no role, refined reservations, extra fields, lower-case type.
    let mesos = r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":2.0001}},
        {"name":"mem","type":"scalar","scalar":{"value":64},"reservations":[{"type":"STATIC","role":"eng"},{"type":"DYNAMIC","role":"eng/fe"}]},
        {"name":"disk","scalar":{"value":10},"provider_id":null}]"#;
    assert_eq!(
        Resources::parse(mesos).unwrap(),
        res("cpus:2;mem(eng/fe):64;disk:10")
    );
    assert_eq!(
        Resources::parse_with_role(mesos, "r").unwrap().cpus(),
        s("2")
    );
    assert_eq!(Resources::parse("[]").unwrap(), Resources::new());
}

#[test]
fn json_errors() {
    let bad = |text: &str| Resources::parse(text).unwrap_err().to_string();
    assert!(bad("[{").starts_with("invalid JSON:"));
    assert!(
        bad(r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":"x"}}]"#)
            .starts_with("invalid JSON:")
    );
    assert_eq!(
        bad(r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":-1}}]"#),
        "invalid resource 'cpus': scalar -1 is negative: a scalar must be >= 0"
    );
    assert_eq!(
        bad(r#"[{"name":"cpus","type":"RANGES","scalar":{"value":1}}]"#),
        "invalid resource 'cpus': type RANGES needs a 'ranges' field"
    );
    assert!(bad(r#"[{"name":"x","type":"FOO"}]"#).contains("unknown type 'FOO'"));
    assert!(
        bad(r#"[{"name":"x","type":"TEXT","text":{"value":"a"}}]"#)
            .contains("TEXT is not a resource type")
    );
    assert!(
        bad(r#"[{"name":"p","type":"RANGES","ranges":{"range":[{"begin":5,"end":1}]}}]"#)
            .contains("invalid range '[5-1]': begin 5 > end 1")
    );
    assert!(bad(r#"[{"name":"x y","scalar":{"value":1}}]"#).contains("'x y'"));
    assert!(
        bad(r#"[{"name":"x","scalar":{"value":1},"role":"a b"}]"#).contains("invalid role 'a b'")
    );
    assert!(bad(r#"[{"name":"s","set":{"item":["a,b"]}}]"#).contains("'a,b'"));
    assert!(
        bad(r#"[{"name":"x","scalar":{"value":1}},{"name":"x","set":{"item":["a"]}}]"#)
            .contains("both SCALAR and SET")
    );
    assert!(bad(r#"[{"name":"x","scalar":{"value":1e300}}]"#).contains("out of range"));
    assert!(bad(r#"[{"name":"x","scalar":{"value":1000000000001}}]"#).contains("out of range"));
    assert!(bad("[1]").contains("expected a resource object"));
}

#[test]
fn attributes_text_and_json() {
    let a = Attributes::parse("rack:abc;zone:west;os:centos8;level:10;keys:[1000-1500];neg:-1.5;tags:{y,x};url:http://h:1").unwrap();
    assert_eq!(a.len(), 8);
    assert_eq!(a.get("rack"), Some(&AttributeValue::Text("abc".into())));
    assert_eq!(
        a.get("os").and_then(AttributeValue::as_text),
        Some("centos8")
    );
    assert_eq!(
        a.get("level").and_then(AttributeValue::as_scalar),
        Some(s("10"))
    );
    assert_eq!(
        a.get("neg").and_then(AttributeValue::as_scalar),
        Some(Scalar::from_milli(-1500))
    );
    assert_eq!(
        a.get("keys").and_then(AttributeValue::as_ranges),
        Some(&Ranges::from_range(1000, 1500))
    );
    assert_eq!(
        a.get("tags").and_then(AttributeValue::as_set),
        Some(&["x".to_owned(), "y".to_owned()][..])
    );
    assert_eq!(
        a.get("url").and_then(AttributeValue::as_text),
        Some("http://h:1")
    );
    assert_eq!(a.get("missing"), None);
    assert_eq!(
        a.to_string(),
        "rack:abc;zone:west;os:centos8;level:10;keys:[1000-1500];neg:-1.5;tags:{x,y};url:http://h:1"
    );
    assert_eq!(Attributes::parse(&a.to_string()).unwrap(), a);

    let json = a.to_json_value();
    assert_eq!(
        json[0],
        serde_json::json!({"name":"rack","type":"TEXT","text":{"value":"abc"}})
    );
    assert_eq!(
        json[3],
        serde_json::json!({"name":"level","type":"SCALAR","scalar":{"value":10}})
    );
    assert_eq!(Attributes::from_json_value(json.clone()).unwrap(), a);
    assert_eq!(Attributes::parse(&json.to_string()).unwrap(), a);
    assert_eq!(serde_json::from_value::<Attributes>(json).unwrap(), a);
    assert!(Attributes::parse("").unwrap().is_empty());
    assert_eq!(
        Attributes::parse("x:inf").unwrap().get("x"),
        Some(&AttributeValue::Text("inf".into()))
    );
}

#[test]
fn attribute_errors_name_the_token() {
    let bad = |text: &str| Attributes::parse(text).unwrap_err().to_string();
    assert_eq!(
        bad("rack"),
        "invalid attribute 'rack': missing ':' between name and value"
    );
    assert_eq!(
        bad("keys:[5-1]"),
        "invalid attribute 'keys:[5-1]': invalid range '[5-1]': begin 5 > end 1"
    );
    assert!(bad("rack:").contains("missing value"));
    assert!(bad("r ack:1").contains("'r ack'"));
    assert!(bad("t:{a").contains("'{a'"));
    assert!(bad(r#"[{"name":"x","type":"TEXT"}]"#).contains("needs a 'text' field"));
}

#[test]
fn value_and_scalar_serde() {
    let v = Value::Ranges(Ranges::from_range(1, 3));
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"type":"RANGES","ranges":{"range":[{"begin":1,"end":3}]}})
    );
    assert_eq!(serde_json::from_value::<Value>(json).unwrap(), v);
    assert_eq!(serde_json::to_string(&s("0.001")).unwrap(), "0.001");
    assert_eq!(serde_json::to_string(&s("2")).unwrap(), "2");
    assert_eq!(
        serde_json::from_str::<Scalar>("1.0005").unwrap(),
        s("1.001")
    );
    assert_eq!(
        serde_json::from_str::<Scalar>("-3").unwrap(),
        Scalar::from_milli(-3000)
    );
    let r = Resource::scalar("cpus", s("1")).with_role("web");
    let back: Resource = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
    let kind = serde_json::to_string(&ValueKind::Ranges).unwrap();
    assert_eq!(kind, "\"RANGES\"");
}

#[derive(Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Report {
    agent: String,
    total: Resources,
    used: Resources,
    attributes: Attributes,
    value: Value,
}

#[test]
fn rkyv_round_trip_with_validation() {
    let report = Report {
        agent: "a1".into(),
        total: res(AGENT),
        used: res("cpus:0.5;ports(web):[31000-31000]"),
        attributes: Attributes::parse("rack:abc;level:10;keys:[1-2];s:{a}").unwrap(),
        value: Value::Scalar(s("1.5")),
    };
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&report).unwrap();
    let archived = rkyv::access::<ArchivedReport, rkyv::rancor::Error>(&bytes).unwrap();
    assert_eq!(archived.agent, "a1");
    assert_eq!(archived.attributes.0.len(), 4);
    assert_eq!(
        archived.value,
        ArchivedValue::Scalar(ArchivedScalar(1500.into()))
    );
    let back = rkyv::deserialize::<Report, rkyv::rancor::Error>(archived).unwrap();
    assert_eq!(back, report);
    // Corrupt input is rejected by validation, not read.
    let mut broken = rkyv::util::AlignedVec::<16>::new();
    broken.extend_from_slice(&bytes);
    broken.fill(0xFF);
    assert!(rkyv::access::<ArchivedReport, rkyv::rancor::Error>(&broken).is_err());
}
