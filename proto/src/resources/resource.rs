//! One resource: a name, the role it is reserved for (`*` = unreserved) and a scalar,
//! ranges or set value; plus the name and role rules shared by both syntaxes.

use std::fmt;

use super::ranges::Ranges;
use super::scalar::Scalar;

/// The role of unreserved resources, and the default role of `name:value` entries.
pub const DEFAULT_ROLE: &str = "*";

/// Characters that would break the text syntax if they appeared in a name, role or item.
const SYNTAX_CHARS: &[char] = &[';', ':', '(', ')', '[', ']', '{', '}', ',', '"', '\\'];

/// The type of a [`Value`], as Mesos names it in JSON (`SCALAR`, `RANGES`, `SET`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum ValueKind {
    Scalar,
    Ranges,
    Set,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueKind::Scalar => "SCALAR",
            ValueKind::Ranges => "RANGES",
            ValueKind::Set => "SET",
        })
    }
}

/// The value of a resource. Sets are kept sorted and free of duplicates by every
/// constructor in this module and by [`super::Resources`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum Value {
    Scalar(Scalar),
    Ranges(Ranges),
    Set(Vec<String>),
}

impl Value {
    /// A set value, sorted and deduplicated.
    pub fn set<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Value {
        let mut v = Value::Set(items.into_iter().map(Into::into).collect());
        v.normalise();
        v
    }

    pub fn kind(&self) -> ValueKind {
        match self {
            Value::Scalar(_) => ValueKind::Scalar,
            Value::Ranges(_) => ValueKind::Ranges,
            Value::Set(_) => ValueKind::Set,
        }
    }

    /// A zero or negative scalar, or an empty range list or set: nothing to offer.
    pub fn is_empty(&self) -> bool {
        match self {
            Value::Scalar(s) => !s.is_positive(),
            Value::Ranges(r) => r.is_empty(),
            Value::Set(s) => s.is_empty(),
        }
    }

    /// Whether `self` holds at least `other` (false across kinds).
    pub fn contains(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Scalar(a), Value::Scalar(b)) => a >= b,
            (Value::Ranges(a), Value::Ranges(b)) => a.contains(b),
            (Value::Set(a), Value::Set(b)) => b.iter().all(|x| a.binary_search(x).is_ok()),
            _ => false,
        }
    }

    pub(crate) fn normalise(&mut self) {
        if let Value::Set(items) = self {
            items.sort();
            items.dedup();
        }
    }

    /// Sum (scalars) or union; a value of another kind is ignored.
    pub(crate) fn add_value(&mut self, other: &Value) {
        match (self, other) {
            (Value::Scalar(a), Value::Scalar(b)) => *a += *b,
            (Value::Ranges(a), Value::Ranges(b)) => a.add(b),
            (Value::Set(a), Value::Set(b)) => {
                a.extend(b.iter().cloned());
                a.sort();
                a.dedup();
            }
            _ => {}
        }
    }

    /// Difference, saturating at zero / empty; a value of another kind is ignored.
    pub(crate) fn subtract_value(&mut self, other: &Value) {
        match (self, other) {
            (Value::Scalar(a), Value::Scalar(b)) => *a = a.saturating_sub_to_zero(*b),
            (Value::Ranges(a), Value::Ranges(b)) => a.subtract(b),
            (Value::Set(a), Value::Set(b)) => a.retain(|x| b.binary_search(x).is_err()),
            _ => {}
        }
    }
}

impl From<Scalar> for Value {
    fn from(s: Scalar) -> Self {
        Value::Scalar(s)
    }
}

impl From<Ranges> for Value {
    fn from(r: Ranges) -> Self {
        Value::Ranges(r)
    }
}

/// One named resource, reserved for `role` (`*` when unreserved). In the text syntax:
/// `cpus:2`, `ports:[31000-32000]`, `bugs(debug_role):{a,b,c}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct Resource {
    pub name: String,
    pub role: String,
    pub value: Value,
}

impl Resource {
    /// An unreserved resource.
    pub fn new(name: impl Into<String>, value: impl Into<Value>) -> Self {
        let mut value = value.into();
        value.normalise();
        Resource {
            name: name.into(),
            role: DEFAULT_ROLE.to_owned(),
            value,
        }
    }

    pub fn scalar(name: impl Into<String>, value: Scalar) -> Self {
        Resource::new(name, Value::Scalar(value))
    }

    pub fn ranges(name: impl Into<String>, value: Ranges) -> Self {
        Resource::new(name, Value::Ranges(value))
    }

    pub fn set<S: Into<String>>(
        name: impl Into<String>,
        items: impl IntoIterator<Item = S>,
    ) -> Self {
        Resource::new(name, Value::set(items))
    }

    /// The same resource reserved for `role`.
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.role = role.into();
        self
    }

    pub fn kind(&self) -> ValueKind {
        self.value.kind()
    }

    pub fn is_reserved(&self) -> bool {
        self.role != DEFAULT_ROLE
    }
}

/// The value type a well-known resource must have.
pub(crate) fn expected_kind(name: &str) -> Option<ValueKind> {
    match name {
        "cpus" | "mem" | "disk" | "gpus" => Some(ValueKind::Scalar),
        "ports" => Some(ValueKind::Ranges),
        _ => None,
    }
}

/// Resource and attribute names: non-empty, no whitespace, no syntax characters.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("missing name".to_owned());
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || SYNTAX_CHARS.contains(c))
    {
        return Err(format!("name '{name}' contains {c:?}"));
    }
    Ok(())
}

/// Set items: non-empty, no surrounding whitespace, no syntax characters, so that the
/// text form always reads back to the same set.
pub(crate) fn check_set_item(item: &str) -> Result<(), String> {
    if item.is_empty() || item.trim() != item {
        return Err(format!(
            "set item '{item}' is empty or has surrounding spaces"
        ));
    }
    if let Some(c) = item
        .chars()
        .find(|c| c.is_control() || SYNTAX_CHARS.contains(c))
    {
        return Err(format!("set item '{item}' contains {c:?}"));
    }
    Ok(())
}

/// Mesos role rules: `*`, or `/`-separated path components, each non-empty, not `.` or
/// `..`, not starting with `-`, without whitespace, `*` or syntax characters.
pub fn check_role(role: &str) -> Result<(), String> {
    if role == DEFAULT_ROLE {
        return Ok(());
    }
    if role.is_empty() {
        return Err("a role must not be empty".to_owned());
    }
    for part in role.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!("'{part}' is not a valid role component"));
        }
        if part.starts_with('-') {
            return Err(format!("role component '{part}' starts with '-'"));
        }
        if let Some(c) = part
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == '*' || SYNTAX_CHARS.contains(c))
        {
            return Err(format!("role contains {c:?}"));
        }
    }
    Ok(())
}

/// Whether resources reserved for `reservation` may be allocated to `role`: the same role
/// or one of its sub-roles (`eng` reservations serve `eng/frontend`), or unreserved.
pub fn is_allocatable_to(reservation: &str, role: &str) -> bool {
    reservation == DEFAULT_ROLE
        || reservation == role
        || role
            .strip_prefix(reservation)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        for ok in ["*", "web", "eng/frontend", "a.b", "debug_role"] {
            assert_eq!(check_role(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a b", "/a", "a/", ".", "a/..", "-x", "a*", "a:b", "a/*"] {
            assert!(check_role(bad).is_err(), "{bad}");
        }
        assert!(is_allocatable_to("*", "web"));
        assert!(is_allocatable_to("eng", "eng/frontend"));
        assert!(!is_allocatable_to("eng", "engineering"));
        assert!(!is_allocatable_to("eng/frontend", "eng"));
    }

    #[test]
    fn values() {
        let mut set = Value::set(["b", "a", "b"]);
        assert_eq!(set, Value::Set(vec!["a".into(), "b".into()]));
        assert!(set.contains(&Value::set(["a"])));
        assert!(!set.contains(&Value::Scalar(Scalar::ZERO)));
        set.subtract_value(&Value::set(["a", "z"]));
        assert_eq!(set, Value::set(["b"]));
        assert!(Value::Scalar(Scalar::from_milli(-1)).is_empty());
        assert_eq!(
            Resource::scalar("cpus", Scalar::from_units(1))
                .with_role("r")
                .role,
            "r"
        );
        assert_eq!(check_name("cpus"), Ok(()));
        assert!(check_name("c pus").is_err() && check_name("").is_err());
        assert!(check_set_item("a,b").is_err() && check_set_item(" a").is_err());
    }
}
