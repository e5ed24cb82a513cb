//! The Mesos JSON form, used by serde for every resource-model type: a resource is
//! `{"name":"cpus","type":"SCALAR","scalar":{"value":1.5},"role":"*"}`, ranges are
//! `{"range":[{"begin":1,"end":2}]}`, sets `{"item":["a"]}`, attributes add `TEXT`.

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::arithmetic::Resources;
use super::attributes::{Attribute, AttributeValue, Attributes};
use super::error::ResourceError;
use super::ranges::{Range, Ranges};
use super::resource::{
    DEFAULT_ROLE, Resource, Value, check_name, check_role, check_set_item, expected_kind,
};
use super::scalar::Scalar;

#[derive(Serialize, Deserialize)]
struct JsonScalar {
    value: Scalar,
}

#[derive(Serialize, Deserialize)]
struct JsonSet {
    #[serde(default)]
    item: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct JsonText {
    value: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "Ranges")]
struct JsonRanges {
    #[serde(default)]
    range: Vec<Range>,
}

/// One entry of Mesos' `reservations` (refined reservations); the last one is the role.
#[derive(Deserialize)]
struct JsonReservation {
    #[serde(default)]
    role: Option<String>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(rename = "Value")]
struct JsonValue {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scalar: Option<JsonScalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ranges: Option<Ranges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    set: Option<JsonSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<JsonText>,
}

#[derive(Serialize, Deserialize)]
#[serde(
    rename = "Resource",
    expecting = "a resource object {\"name\", \"type\", ...}"
)]
struct JsonResource {
    name: String,
    #[serde(flatten)]
    value: JsonValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(default, skip_serializing)]
    reservations: Vec<JsonReservation>,
}

#[derive(Serialize, Deserialize)]
#[serde(
    rename = "Attribute",
    expecting = "an attribute object {\"name\", \"type\", ...}"
)]
struct JsonAttribute {
    name: String,
    #[serde(flatten)]
    value: JsonValue,
}

fn decode_value(v: JsonValue) -> Result<AttributeValue, String> {
    let kind = match v.kind {
        Some(k) => k.to_ascii_uppercase(),
        None if v.scalar.is_some() => "SCALAR".to_owned(),
        None if v.ranges.is_some() => "RANGES".to_owned(),
        None if v.set.is_some() => "SET".to_owned(),
        None if v.text.is_some() => "TEXT".to_owned(),
        None => return Err("missing 'type' and value".to_owned()),
    };
    let missing = |field: &str| format!("type {kind} needs a '{field}' field");
    match kind.as_str() {
        "SCALAR" => v
            .scalar
            .map(|s| AttributeValue::Scalar(s.value))
            .ok_or_else(|| missing("scalar")),
        "RANGES" => v
            .ranges
            .map(AttributeValue::Ranges)
            .ok_or_else(|| missing("ranges")),
        "SET" => {
            let mut items = v.set.ok_or_else(|| missing("set"))?.item;
            for item in &items {
                check_set_item(item)?;
            }
            items.sort();
            items.dedup();
            Ok(AttributeValue::Set(items))
        }
        "TEXT" => v
            .text
            .map(|t| AttributeValue::Text(t.value))
            .ok_or_else(|| missing("text")),
        other => Err(format!("unknown type '{other}'")),
    }
}

fn encode_value(v: &AttributeValue) -> JsonValue {
    let mut out = JsonValue::default();
    let kind = match v {
        AttributeValue::Scalar(s) => {
            out.scalar = Some(JsonScalar { value: *s });
            "SCALAR"
        }
        AttributeValue::Ranges(r) => {
            out.ranges = Some(r.clone());
            "RANGES"
        }
        AttributeValue::Set(items) => {
            out.set = Some(JsonSet {
                item: items.clone(),
            });
            "SET"
        }
        AttributeValue::Text(t) => {
            out.text = Some(JsonText { value: t.clone() });
            "TEXT"
        }
    };
    out.kind = Some(kind.to_owned());
    out
}

fn to_attribute_value(v: &Value) -> AttributeValue {
    match v {
        Value::Scalar(s) => AttributeValue::Scalar(*s),
        Value::Ranges(r) => AttributeValue::Ranges(r.clone()),
        Value::Set(s) => AttributeValue::Set(s.clone()),
    }
}

/// A resource value: non-negative scalars, ranges or sets; no text.
fn to_resource_value(v: AttributeValue) -> Result<Value, String> {
    match v {
        AttributeValue::Scalar(s) if s.milli() < 0 => {
            Err(format!("scalar {s} is negative: a scalar must be >= 0"))
        }
        AttributeValue::Scalar(s) => Ok(Value::Scalar(s)),
        AttributeValue::Ranges(r) => Ok(Value::Ranges(r)),
        AttributeValue::Set(s) => Ok(Value::Set(s)),
        AttributeValue::Text(_) => Err("TEXT is not a resource type".to_owned()),
    }
}

fn resource_from_json(r: JsonResource, default_role: &str) -> Result<Resource, ResourceError> {
    let invalid = |reason: String| ResourceError::InvalidResource {
        resource: r.name.clone(),
        reason,
    };
    check_name(&r.name).map_err(invalid)?;
    let role = r
        .reservations
        .iter()
        .rev()
        .find_map(|x| x.role.clone())
        .or_else(|| r.role.clone())
        .unwrap_or_else(|| default_role.to_owned());
    check_role(&role).map_err(|reason| invalid(format!("invalid role '{role}': {reason}")))?;
    let value = decode_value(r.value)
        .and_then(to_resource_value)
        .map_err(|reason| ResourceError::InvalidResource {
            resource: r.name.clone(),
            reason,
        })?;
    if let Some(kind) = expected_kind(&r.name).filter(|k| *k != value.kind()) {
        return Err(ResourceError::InvalidResource {
            reason: format!("'{}' must be {kind}, not {}", r.name, value.kind()),
            resource: r.name,
        });
    }
    Ok(Resource {
        name: r.name,
        role,
        value,
    })
}

fn resource_to_json(r: &Resource) -> JsonResource {
    JsonResource {
        name: r.name.clone(),
        value: encode_value(&to_attribute_value(&r.value)),
        role: Some(r.role.clone()),
        reservations: Vec::new(),
    }
}

fn resources_from_list(list: Vec<JsonResource>, role: &str) -> Result<Resources, ResourceError> {
    let list = list
        .into_iter()
        .map(|r| resource_from_json(r, role))
        .collect::<Result<Vec<_>, _>>()?;
    Resources::from_parsed(list)
}

fn attribute_from_json(a: JsonAttribute) -> Result<Attribute, ResourceError> {
    let invalid = |reason: String| ResourceError::InvalidAttribute {
        attribute: a.name.clone(),
        reason,
    };
    check_name(&a.name).map_err(invalid)?;
    let value = decode_value(a.value).map_err(invalid)?;
    Ok(Attribute {
        name: a.name,
        value,
    })
}

fn json_error(e: serde_json::Error) -> ResourceError {
    ResourceError::InvalidJson {
        reason: e.to_string(),
    }
}

pub(crate) fn resources_from_json_str(
    text: &str,
    default_role: &str,
) -> Result<Resources, ResourceError> {
    resources_from_list(
        serde_json::from_str(text).map_err(json_error)?,
        default_role,
    )
}

pub(crate) fn attributes_from_json_str(text: &str) -> Result<Attributes, ResourceError> {
    let list: Vec<JsonAttribute> = serde_json::from_str(text).map_err(json_error)?;
    list.into_iter().map(attribute_from_json).collect()
}

impl Resources {
    /// The Mesos JSON array form.
    pub fn to_json_value(&self) -> serde_json::Value {
        // Serializing plain structs with string keys into a Value cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }

    pub fn from_json_value(value: serde_json::Value) -> Result<Resources, ResourceError> {
        resources_from_list(
            serde_json::from_value(value).map_err(json_error)?,
            DEFAULT_ROLE,
        )
    }
}

impl Attributes {
    /// The Mesos JSON array form.
    pub fn to_json_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    pub fn from_json_value(value: serde_json::Value) -> Result<Attributes, ResourceError> {
        let list: Vec<JsonAttribute> = serde_json::from_value(value).map_err(json_error)?;
        list.into_iter().map(attribute_from_json).collect()
    }
}

/// Whole numbers as integers, others as the shortest float that reads back the same.
impl Serialize for Scalar {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.milli() % 1000 == 0 {
            s.serialize_i64(self.milli() / 1000)
        } else {
            s.serialize_f64(self.as_f64())
        }
    }
}

struct ScalarVisitor;

fn out_of_range<E: de::Error>(v: impl std::fmt::Display) -> E {
    E::custom(format!(
        "scalar {v} is out of range: at most {}",
        Scalar::PARSE_LIMIT
    ))
}

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        v.checked_mul(1000)
            .map(Scalar::from_milli)
            .filter(|s| s.milli().abs() <= Scalar::PARSE_LIMIT.milli())
            .ok_or_else(|| out_of_range(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        i64::try_from(v)
            .map_err(|_| out_of_range(v))
            .and_then(|v| self.visit_i64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Scalar::from_f64(v)
            .filter(|s| s.milli().abs() <= Scalar::PARSE_LIMIT.milli())
            .ok_or_else(|| out_of_range(v))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

impl Serialize for Ranges {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        JsonRanges {
            range: self.as_slice().to_vec(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ranges {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = JsonRanges::deserialize(d)?;
        if let Some(bad) = json.range.iter().find(|r| r.begin > r.end) {
            return Err(de::Error::custom(format!(
                "invalid range '[{bad}]': begin {} > end {}",
                bad.begin, bad.end
            )));
        }
        Ok(json.range.into_iter().collect())
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        encode_value(&to_attribute_value(self)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        decode_value(JsonValue::deserialize(d)?)
            .and_then(to_resource_value)
            .map_err(de::Error::custom)
    }
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        resource_to_json(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        resource_from_json(JsonResource::deserialize(d)?, DEFAULT_ROLE).map_err(de::Error::custom)
    }
}

/// The Mesos JSON array form.
impl Serialize for Resources {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(resource_to_json))
    }
}

impl<'de> Deserialize<'de> for Resources {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        resources_from_list(Vec::deserialize(d)?, DEFAULT_ROLE).map_err(de::Error::custom)
    }
}

impl Serialize for AttributeValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        encode_value(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for AttributeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        decode_value(JsonValue::deserialize(d)?).map_err(de::Error::custom)
    }
}

impl Serialize for Attribute {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        JsonAttribute {
            name: self.name.clone(),
            value: encode_value(&self.value),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Attribute {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        attribute_from_json(JsonAttribute::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// The Mesos JSON array form.
impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Attributes(Vec::deserialize(d)?))
    }
}
