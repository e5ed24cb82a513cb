//! Resource and attribute parsing (Mesos text and JSON forms) on arbitrary input: never
//! panics, and whatever parses prints back (text and JSON) to an equal value.
#![no_main]

use fleet_proto::resources::{Attributes, Ranges, Resources, Scalar};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(resources) = Resources::parse(text) {
        let printed = resources.to_string();
        assert_eq!(
            Resources::parse(&printed).ok(),
            Some(resources.clone()),
            "text form {printed:?}"
        );
        let json = serde_json::to_string(&resources).unwrap_or_default();
        assert_eq!(
            Resources::parse(&json).ok(),
            Some(resources.clone()),
            "JSON form {json}"
        );
        let mut twice = resources.clone();
        twice += &resources;
        assert!(twice.contains(&resources));
        let mut back = twice.checked_sub(&resources).unwrap_or_default();
        back += &resources;
        assert_eq!(back, twice);
    }
    if let Ok(attributes) = Attributes::parse(text) {
        if !text.trim_start().starts_with('[') {
            let printed = attributes.to_string();
            assert_eq!(
                Attributes::parse(&printed).ok(),
                Some(attributes.clone()),
                "text form {printed:?}"
            );
        }
        assert_eq!(
            Attributes::from_json_value(attributes.to_json_value()).ok(),
            Some(attributes)
        );
    }
    if let Ok(ranges) = Ranges::parse(text) {
        assert_eq!(Ranges::parse(&ranges.to_string()).ok(), Some(ranges));
    }
    if let Ok(scalar) = text.parse::<Scalar>() {
        assert_eq!(scalar.to_string().parse::<Scalar>().ok(), Some(scalar));
    }
});
