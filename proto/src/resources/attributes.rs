//! Agent attributes (`rack:abc;zone:west;level:10;keys:[1000-1500]`): named text, scalar,
//! ranges or set values passed along in offers and matched by offer constraints.

use super::ranges::Ranges;
use super::scalar::Scalar;

/// The value of an attribute. In the text syntax a number is a scalar, `[..]` ranges,
/// `{..}` a set, anything else text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum AttributeValue {
    Text(String),
    Scalar(Scalar),
    Ranges(Ranges),
    Set(Vec<String>),
}

impl AttributeValue {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            AttributeValue::Text(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_scalar(&self) -> Option<Scalar> {
        match self {
            AttributeValue::Scalar(s) => Some(*s),
            _ => None,
        }
    }

    pub fn as_ranges(&self) -> Option<&Ranges> {
        match self {
            AttributeValue::Ranges(r) => Some(r),
            _ => None,
        }
    }

    pub fn as_set(&self) -> Option<&[String]> {
        match self {
            AttributeValue::Set(s) => Some(s),
            _ => None,
        }
    }
}

/// One `name:value` attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct Attribute {
    pub name: String,
    pub value: AttributeValue,
}

impl Attribute {
    pub fn new(name: impl Into<String>, value: AttributeValue) -> Self {
        Attribute {
            name: name.into(),
            value,
        }
    }

    pub fn text(name: impl Into<String>, value: impl Into<String>) -> Self {
        Attribute::new(name, AttributeValue::Text(value.into()))
    }
}

/// An agent's attributes, in the order given (Mesos keeps order and allows repeats).
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct Attributes(pub Vec<Attribute>);

impl Attributes {
    pub const fn new() -> Self {
        Attributes(Vec::new())
    }

    /// The first attribute called `name`.
    pub fn get(&self, name: &str) -> Option<&AttributeValue> {
        self.0.iter().find(|a| a.name == name).map(|a| &a.value)
    }

    pub fn push(&mut self, attribute: Attribute) {
        self.0.push(attribute);
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Attribute> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Attribute> for Attributes {
    fn from_iter<I: IntoIterator<Item = Attribute>>(iter: I) -> Self {
        Attributes(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = &'a Attribute;
    type IntoIter = std::slice::Iter<'a, Attribute>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
