//! The Mesos text syntax: `cpus:24;mem:24576;ports:[21000-24000];bugs(debug_role):{a,b}`
//! for resources and `rack:abc;level:10;keys:[1000-1500]` for attributes, parsed and
//! printed. Text starting with `[` is the JSON form and goes to the JSON module.

use std::fmt;
use std::str::FromStr;

use super::arithmetic::Resources;
use super::attributes::{Attribute, AttributeValue, Attributes};
use super::error::ResourceError;
use super::json;
use super::ranges::parse_ranges;
use super::resource::{
    DEFAULT_ROLE, Resource, Value, check_name, check_role, check_set_item, expected_kind,
};
use super::scalar::{Scalar, parse_milli};

/// Entries are separated by `;` (and, leniently, newlines); empty entries are skipped.
fn entries(text: &str) -> impl Iterator<Item = &str> {
    text.split([';', '\n'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// `{a,b,c}`; empty items are skipped as Mesos does. The error is a reason.
fn parse_set(value: &str) -> Result<Vec<String>, String> {
    let Some(inner) = value.strip_prefix('{').and_then(|v| v.strip_suffix('}')) else {
        return Err(format!(
            "'{value}' is not a set: a set is written as {{a,b,...}}"
        ));
    };
    let mut items = Vec::new();
    for item in inner.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        check_set_item(item)?;
        items.push(item.to_owned());
    }
    items.sort();
    items.dedup();
    Ok(items)
}

/// A scalar, `[ranges]` or `{set}` value of the entry `token`.
fn parse_value(value: &str, token: &str) -> Result<Value, ResourceError> {
    let invalid = |reason: String| ResourceError::InvalidResource {
        resource: token.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("missing value".to_owned()));
    }
    if value.starts_with('[') {
        return parse_ranges(value)
            .map(Value::Ranges)
            .map_err(|e| ResourceError::InvalidRange {
                range: e.range,
                text: token.to_owned(),
                reason: e.reason,
            });
    }
    if value.starts_with('{') {
        return parse_set(value).map(Value::Set).map_err(invalid);
    }
    parse_milli(value, false)
        .map(|m| Value::Scalar(Scalar::from_milli(m)))
        .map_err(invalid)
}

fn parse_resources_text(text: &str, default_role: &str) -> Result<Resources, ResourceError> {
    let mut list = Vec::new();
    for token in entries(text) {
        let invalid = |reason: String| ResourceError::InvalidResource {
            resource: token.to_owned(),
            reason,
        };
        let Some((head, value)) = token.split_once(':') else {
            return Err(invalid("missing ':' between name and value".to_owned()));
        };
        if value.contains(':') {
            return Err(invalid("extra ':'".to_owned()));
        }
        let (name, role) = match head.find('(') {
            None => (head.trim(), default_role),
            Some(open) => {
                let close = head.rfind(')').filter(|c| *c > open);
                let Some(close) = close else {
                    return Err(invalid("mismatched parentheses around the role".to_owned()));
                };
                if !head[close + 1..].trim().is_empty() {
                    return Err(invalid(format!(
                        "unexpected '{}' after the role",
                        &head[close + 1..]
                    )));
                }
                (head[..open].trim(), head[open + 1..close].trim())
            }
        };
        check_name(name).map_err(invalid)?;
        check_role(role).map_err(|reason| invalid(format!("invalid role '{role}': {reason}")))?;
        let value = parse_value(value.trim(), token)?;
        if let Some(kind) = expected_kind(name).filter(|k| *k != value.kind()) {
            return Err(invalid(format!(
                "'{name}' must be {kind}, not {}",
                value.kind()
            )));
        }
        list.push(Resource {
            name: name.to_owned(),
            role: role.to_owned(),
            value,
        });
    }
    Resources::from_parsed(list)
}

impl Resources {
    /// Parses the Mesos text syntax, or the Mesos JSON form when `text` starts with `[`.
    /// Entries without a role are unreserved (`*`).
    pub fn parse(text: &str) -> Result<Resources, ResourceError> {
        Resources::parse_with_role(text, DEFAULT_ROLE)
    }

    /// As [`Resources::parse`], with entries that name no role reserved for
    /// `default_role` (the agent's `--default_role`).
    pub fn parse_with_role(text: &str, default_role: &str) -> Result<Resources, ResourceError> {
        check_role(default_role).map_err(|reason| ResourceError::InvalidRole {
            role: default_role.to_owned(),
            reason,
        })?;
        if text.trim_start().starts_with('[') {
            json::resources_from_json_str(text, default_role)
        } else {
            parse_resources_text(text, default_role)
        }
    }
}

impl FromStr for Resources {
    type Err = ResourceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resources::parse(s)
    }
}

fn parse_attributes_text(text: &str) -> Result<Attributes, ResourceError> {
    let mut out = Attributes::new();
    for token in entries(text) {
        let invalid = |reason: String| ResourceError::InvalidAttribute {
            attribute: token.to_owned(),
            reason,
        };
        let Some((name, value)) = token.split_once(':') else {
            return Err(invalid("missing ':' between name and value".to_owned()));
        };
        let (name, value) = (name.trim(), value.trim());
        check_name(name).map_err(invalid)?;
        let value = if value.is_empty() {
            return Err(invalid("missing value".to_owned()));
        } else if value.starts_with('[') {
            let ranges = parse_ranges(value)
                .map_err(|e| invalid(format!("invalid range '{}': {}", e.range, e.reason)))?;
            AttributeValue::Ranges(ranges)
        } else if value.starts_with('{') {
            AttributeValue::Set(parse_set(value).map_err(invalid)?)
        } else {
            match parse_milli(value, true) {
                Ok(m) => AttributeValue::Scalar(Scalar::from_milli(m)),
                Err(_) => AttributeValue::Text(value.to_owned()),
            }
        };
        out.push(Attribute {
            name: name.to_owned(),
            value,
        });
    }
    Ok(out)
}

impl Attributes {
    /// Parses `rack:abc;zone:west;level:10;keys:[1000-1500]`, or the JSON form when
    /// `text` starts with `[`.
    pub fn parse(text: &str) -> Result<Attributes, ResourceError> {
        if text.trim_start().starts_with('[') {
            json::attributes_from_json_str(text)
        } else {
            parse_attributes_text(text)
        }
    }
}

impl FromStr for Attributes {
    type Err = ResourceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Attributes::parse(s)
    }
}

fn write_set(f: &mut fmt::Formatter<'_>, items: &[String]) -> fmt::Result {
    write!(f, "{{{}}}", items.join(","))
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Scalar(s) => write!(f, "{s}"),
            Value::Ranges(r) => write!(f, "{r}"),
            Value::Set(items) => write_set(f, items),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.role == DEFAULT_ROLE {
            write!(f, "{}:{}", self.name, self.value)
        } else {
            write!(f, "{}({}):{}", self.name, self.role, self.value)
        }
    }
}

/// The text syntax; `Resources::parse` reads it back to an equal value.
impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl fmt::Display for AttributeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeValue::Text(t) => f.write_str(t),
            AttributeValue::Scalar(s) => write!(f, "{s}"),
            AttributeValue::Ranges(r) => write!(f, "{r}"),
            AttributeValue::Set(items) => write_set(f, items),
        }
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.value)
    }
}

impl fmt::Display for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}
