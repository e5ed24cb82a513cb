//! Property tests: the arithmetic laws, both syntaxes round-trip, and parsers never panic.

use proptest::prelude::*;

use super::super::*;
use super::{minus, plus};

fn r_plus(a: &Ranges, b: &Ranges) -> Ranges {
    let mut out = a.clone();
    out += b;
    out
}

fn r_minus(a: &Ranges, b: &Ranges) -> Ranges {
    let mut out = a.clone();
    out -= b;
    out
}

fn ranges() -> impl Strategy<Value = Ranges> {
    prop::collection::vec((0u64..200, 0u64..20), 0..5)
        .prop_map(|v| v.into_iter().map(|(b, l)| Range::new(b, b + l)).collect())
}

fn set() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-e]{1,2}", 0..4)
}

fn role() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        Just("web".to_owned()),
        Just("eng/fe".to_owned())
    ]
}

fn resource() -> impl Strategy<Value = Resource> {
    let value = prop_oneof![
        (0i64..100_000).prop_map(|m| Value::Scalar(Scalar::from_milli(m))),
        ranges().prop_map(Value::Ranges),
        set().prop_map(Value::set),
    ];
    (value, role()).prop_map(|(value, role)| {
        // One kind per name keeps parsed text free of type conflicts.
        let name = match value.kind() {
            ValueKind::Scalar => "cpus",
            ValueKind::Ranges => "ports",
            ValueKind::Set => "zones",
        };
        Resource {
            name: name.to_owned(),
            role,
            value,
        }
    })
}

fn resources() -> impl Strategy<Value = Resources> {
    prop::collection::vec(resource(), 0..6).prop_map(|v| v.into_iter().collect())
}

fn scalars_only() -> impl Strategy<Value = Resources> {
    prop::collection::vec(
        (
            prop_oneof![Just("cpus"), Just("mem"), Just("gpus")],
            0i64..10_000,
            role(),
        ),
        0..6,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(n, m, r)| Resource::scalar(n, Scalar::from_milli(m)).with_role(r))
            .collect()
    })
}

fn attributes() -> impl Strategy<Value = Attributes> {
    let value = prop_oneof![
        "[a-z][a-z0-9.]{0,5}".prop_map(AttributeValue::Text),
        (-100_000i64..100_000).prop_map(|m| AttributeValue::Scalar(Scalar::from_milli(m))),
        ranges().prop_map(AttributeValue::Ranges),
        set().prop_map(|s| match Value::set(s) {
            Value::Set(items) => AttributeValue::Set(items),
            _ => unreachable!(),
        }),
    ];
    prop::collection::vec(("[a-z]{1,4}", value), 0..5)
        .prop_map(|v| v.into_iter().map(|(n, v)| Attribute::new(n, v)).collect())
}

/// Whether the normalised invariants hold: sorted keys, no empties, coalesced ranges.
fn is_normalised(r: &Resources) -> bool {
    let keys: Vec<_> = r
        .iter()
        .map(|e| (e.name.clone(), e.role.clone(), e.kind()))
        .collect();
    keys.windows(2).all(|w| w[0] < w[1])
        && r.iter().all(|e| {
            !e.value.is_empty()
                && match &e.value {
                    Value::Ranges(x) => ranges_coalesced(x),
                    Value::Set(s) => s.windows(2).all(|w| w[0] < w[1]),
                    Value::Scalar(_) => true,
                }
        })
}

fn ranges_coalesced(r: &Ranges) -> bool {
    let s = r.as_slice();
    s.iter().all(|x| x.begin <= x.end)
        && s.windows(2)
            .all(|w| w[0].end.saturating_add(1) < w[1].begin)
}

proptest! {
    #[test]
    fn add_then_subtract_scalars_is_identity(a in scalars_only(), b in scalars_only()) {
        prop_assert_eq!(plus(&a, &b).checked_sub(&b), Some(a));
    }

    #[test]
    fn add_then_subtract_disjoint_is_identity(a in resources(), b in resources()) {
        // Ranges and sets are unions: identity needs b disjoint from a.
        let b = minus(&b, &a);
        prop_assert_eq!(plus(&a, &b).checked_sub(&b), Some(a));
    }

    #[test]
    fn subtract_then_add_is_identity(a in resources(), b in resources()) {
        if let Some(rest) = a.checked_sub(&b) {
            prop_assert_eq!(plus(&rest, &b), a);
        }
    }

    #[test]
    fn sum_contains_both(a in resources(), b in resources()) {
        let sum = plus(&a, &b);
        prop_assert!(sum.contains(&a) && sum.contains(&b));
        prop_assert!(a.fits_in(&sum));
        prop_assert!(sum.flatten().contains(&a.flatten()));
    }

    #[test]
    fn contains_agrees_with_checked_sub(a in resources(), b in resources()) {
        prop_assert_eq!(a.contains(&b), a.checked_sub(&b).is_some());
        prop_assert!(a.contains(&a) && a.contains(&Resources::new()));
    }

    #[test]
    fn saturating_sub_never_grows(a in resources(), b in resources()) {
        let d = minus(&a, &b);
        prop_assert!(a.contains(&d));
        prop_assert!(is_normalised(&d));
    }

    #[test]
    fn results_stay_normalised(a in resources(), b in resources()) {
        prop_assert!(is_normalised(&a));
        prop_assert!(is_normalised(&plus(&a, &b)));
        prop_assert!(is_normalised(&a.flatten()));
        prop_assert!(is_normalised(&a.allocatable_to("eng/fe")));
    }

    #[test]
    fn text_round_trip(a in resources()) {
        prop_assert_eq!(Resources::parse(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn json_round_trip(a in resources()) {
        let text = serde_json::to_string(&a).unwrap();
        prop_assert_eq!(Resources::parse(&text).unwrap(), a.clone());
        prop_assert_eq!(serde_json::from_str::<Resources>(&text).unwrap(), a);
    }

    #[test]
    fn attributes_round_trip(a in attributes()) {
        prop_assert_eq!(Attributes::parse(&a.to_string()).unwrap(), a.clone());
        prop_assert_eq!(Attributes::from_json_value(a.to_json_value()).unwrap(), a);
    }

    #[test]
    fn scalar_text_round_trip(m in 0i64..=Scalar::PARSE_LIMIT.milli()) {
        let s = Scalar::from_milli(m);
        prop_assert_eq!(s.to_string().parse::<Scalar>().unwrap(), s);
        let json = serde_json::to_string(&s).unwrap();
        prop_assert_eq!(serde_json::from_str::<Scalar>(&json).unwrap(), s);
    }

    #[test]
    fn ranges_stay_coalesced(a in ranges(), b in ranges(), n in 0u64..100) {
        let sum = r_plus(&a, &b);
        prop_assert!(ranges_coalesced(&sum));
        prop_assert!(sum.contains(&a) && sum.contains(&b));
        let diff = r_minus(&a, &b);
        prop_assert!(ranges_coalesced(&diff));
        prop_assert!(diff.iter().all(|v| a.contains_value(v) && !b.contains_value(v)));
        prop_assert_eq!(diff.len() + a.intersection(&b).len(), a.len());
        prop_assert_eq!(Ranges::parse(&a.to_string()).unwrap(), a.clone());
        match a.take(n) {
            Some(t) => {
                prop_assert_eq!(t.len(), n);
                prop_assert!(a.contains(&t));
                prop_assert_eq!(t.iter().collect::<Vec<_>>(), a.iter().take(n as usize).collect::<Vec<_>>());
            }
            None => prop_assert!(a.len() < n),
        }
    }

    #[test]
    fn parsers_never_panic(text in ".{0,64}") {
        let _ = Resources::parse(&text);
        let _ = Attributes::parse(&text);
        let _ = Ranges::parse(&text);
        let _ = text.parse::<Scalar>();
    }

    #[test]
    fn parsers_never_panic_on_syntax_soup(text in "[a-z0-9():;,\\[\\]{}.\\- *e/\"]{0,48}") {
        if let Ok(r) = Resources::parse(&text) {
            prop_assert_eq!(Resources::parse(&r.to_string()).unwrap(), r.clone());
            prop_assert_eq!(Resources::from_json_value(r.to_json_value()).unwrap(), r);
        }
        if let Ok(a) = Attributes::parse(&text) {
            prop_assert_eq!(Attributes::parse(&a.to_string()).unwrap(), a);
        }
        let _ = Ranges::parse(&text);
        let _ = text.parse::<Scalar>();
    }
}
