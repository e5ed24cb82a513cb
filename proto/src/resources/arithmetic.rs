//! `Resources`: a normalised multiset of resources with the arithmetic the allocator and
//! the agents use (sum, difference, containment), all role-aware.

use std::ops::{AddAssign, SubAssign};

use super::error::ResourceError;
use super::ranges::Ranges;
use super::resource::{DEFAULT_ROLE, Resource, Value, ValueKind, is_allocatable_to};
use super::scalar::Scalar;

/// A normalised list of resources: at most one entry per (name, role, value kind), sorted
/// by that key, with no zero scalars and no empty ranges or sets. Equal resources
/// therefore compare equal.
///
/// Subtraction (`-`, `-=`, [`Resources::subtract`]) saturates: what is not there is not
/// removed. Use [`Resources::checked_sub`] to require containment.
#[derive(
    Clone, Default, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct Resources(Vec<Resource>);

impl Resources {
    pub const fn new() -> Self {
        Resources(Vec::new())
    }

    /// Builds from parsed entries, rejecting a name given with two value types.
    pub(crate) fn from_parsed(list: Vec<Resource>) -> Result<Resources, ResourceError> {
        let mut kinds: Vec<(&str, ValueKind)> = Vec::new();
        for r in &list {
            match kinds.iter().find(|(n, _)| *n == r.name) {
                Some((_, k)) if *k != r.kind() => {
                    return Err(ResourceError::ConflictingTypes {
                        name: r.name.clone(),
                        first: k.to_string(),
                        second: r.kind().to_string(),
                    });
                }
                Some(_) => {}
                None => kinds.push((&r.name, r.kind())),
            }
        }
        let out: Resources = list.into_iter().collect();
        // Repeated entries are summed; the sum must stay printable and parsable.
        if let Some(big) = out.iter().find(|r| match r.value {
            Value::Scalar(s) => s > Scalar::PARSE_LIMIT,
            _ => false,
        }) {
            return Err(ResourceError::InvalidResource {
                resource: big.to_string(),
                reason: format!("the sum is too large: at most {}", Scalar::PARSE_LIMIT),
            });
        }
        Ok(out)
    }

    fn position(&self, name: &str, role: &str, kind: ValueKind) -> Result<usize, usize> {
        self.0.binary_search_by(|e| {
            (e.name.as_str(), e.role.as_str(), e.kind()).cmp(&(name, role, kind))
        })
    }

    /// Adds one resource (sum for scalars, union for ranges and sets). Zero or negative
    /// scalars and empty values are dropped.
    pub fn push(&mut self, mut resource: Resource) {
        resource.value.normalise();
        if resource.value.is_empty() {
            return;
        }
        match self.position(&resource.name, &resource.role, resource.kind()) {
            Ok(i) => self.0[i].value.add_value(&resource.value),
            Err(i) => self.0.insert(i, resource),
        }
    }

    /// Removes one resource, saturating at nothing.
    pub fn remove(&mut self, resource: &Resource) {
        if let Ok(i) = self.position(&resource.name, &resource.role, resource.kind()) {
            self.0[i].value.subtract_value(&resource.value);
            if self.0[i].value.is_empty() {
                self.0.remove(i);
            }
        }
    }

    /// Whether the one resource is available here (same name, role and kind).
    pub fn contains_resource(&self, resource: &Resource) -> bool {
        if resource.value.is_empty() {
            return true;
        }
        match self.position(&resource.name, &resource.role, resource.kind()) {
            Ok(i) => self.0[i].value.contains(&resource.value),
            Err(_) => false,
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Resource> {
        self.0.iter()
    }

    /// Number of entries (name, role, kind), not of units.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn add(&mut self, other: &Resources) {
        for r in &other.0 {
            self.push(r.clone());
        }
    }

    /// Removes `other`, saturating at nothing for what is missing.
    pub fn subtract(&mut self, other: &Resources) {
        for r in &other.0 {
            self.remove(r);
        }
    }

    /// `self -= other` if `self` contains `other`, else `self` becomes empty: what
    /// `*self = self.checked_sub(other).unwrap_or_default()` does, without the copy.
    pub fn subtract_or_clear(&mut self, other: &Resources) {
        if self.contains(other) {
            self.subtract(other);
        } else {
            self.0.clear();
        }
    }

    /// `self - other` if `self` contains `other`, else `None`.
    pub fn checked_sub(&self, other: &Resources) -> Option<Resources> {
        if !self.contains(other) {
            return None;
        }
        let mut out = self.clone();
        out.subtract(other);
        Some(out)
    }

    /// Whether every resource of `other` is here for the same role: reserved resources
    /// satisfy only requests for their role, unreserved ones only unreserved requests.
    pub fn contains(&self, other: &Resources) -> bool {
        other.0.iter().all(|r| self.contains_resource(r))
    }

    /// `other.contains(self)`.
    pub fn fits_in(&self, other: &Resources) -> bool {
        other.contains(self)
    }

    /// Sum of the scalar `name` over all roles.
    pub fn scalar(&self, name: &str) -> Scalar {
        self.0
            .iter()
            .filter(|r| r.name == name)
            .filter_map(|r| match r.value {
                Value::Scalar(s) => Some(s),
                _ => None,
            })
            .sum()
    }

    /// Union of the ranges `name` over all roles.
    pub fn ranges(&self, name: &str) -> Ranges {
        let mut out = Ranges::new();
        for r in self.0.iter().filter(|r| r.name == name) {
            if let Value::Ranges(v) = &r.value {
                out += v;
            }
        }
        out
    }

    /// Union of the set `name` over all roles, sorted.
    pub fn set(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.0.iter().filter(|r| r.name == name) {
            if let Value::Set(v) = &r.value {
                out.extend(v.iter().cloned());
            }
        }
        out.sort();
        out.dedup();
        out
    }

    pub fn cpus(&self) -> Scalar {
        self.scalar("cpus")
    }

    pub fn mem_mb(&self) -> Scalar {
        self.scalar("mem")
    }

    pub fn disk_mb(&self) -> Scalar {
        self.scalar("disk")
    }

    pub fn gpus(&self) -> Scalar {
        self.scalar("gpus")
    }

    pub fn ports(&self) -> Ranges {
        self.ranges("ports")
    }

    /// The entries that satisfy `keep`.
    pub fn filter(&self, keep: impl Fn(&Resource) -> bool) -> Resources {
        Resources(self.0.iter().filter(|r| keep(r)).cloned().collect())
    }

    /// Resources reserved for exactly `role` (`"*"` gives the unreserved ones).
    pub fn reserved(&self, role: &str) -> Resources {
        self.filter(|r| r.role == role)
    }

    /// Resources reserved for any role.
    pub fn all_reserved(&self) -> Resources {
        self.filter(Resource::is_reserved)
    }

    pub fn unreserved(&self) -> Resources {
        self.reserved(DEFAULT_ROLE)
    }

    /// What a framework in `role` may be offered: unreserved resources and those reserved
    /// for `role` or one of its ancestors (Mesos hierarchical roles).
    pub fn allocatable_to(&self, role: &str) -> Resources {
        self.filter(|r| is_allocatable_to(&r.role, role))
    }

    /// The distinct roles of the reserved entries, sorted.
    pub fn reservation_roles(&self) -> Vec<&str> {
        let mut roles: Vec<&str> = self
            .0
            .iter()
            .filter(|r| r.is_reserved())
            .map(|r| r.role.as_str())
            .collect();
        roles.sort_unstable();
        roles.dedup();
        roles
    }

    /// Everything reserved for `role` (merging entries of the same name and kind).
    pub fn with_role(&self, role: &str) -> Resources {
        self.0.iter().map(|r| r.clone().with_role(role)).collect()
    }

    /// Everything unreserved: `with_role("*")`.
    pub fn flatten(&self) -> Resources {
        self.with_role(DEFAULT_ROLE)
    }

    /// Each scalar entry as (name, role, amount).
    pub fn scalars(&self) -> impl Iterator<Item = (&str, &str, Scalar)> + '_ {
        self.0.iter().filter_map(|r| match r.value {
            Value::Scalar(s) => Some((r.name.as_str(), r.role.as_str(), s)),
            _ => None,
        })
    }
}

impl From<Resource> for Resources {
    fn from(r: Resource) -> Self {
        let mut out = Resources::new();
        out.push(r);
        out
    }
}

impl FromIterator<Resource> for Resources {
    fn from_iter<I: IntoIterator<Item = Resource>>(iter: I) -> Self {
        let mut out = Resources::new();
        out.extend(iter);
        out
    }
}

impl Extend<Resource> for Resources {
    fn extend<I: IntoIterator<Item = Resource>>(&mut self, iter: I) {
        for r in iter {
            self.push(r);
        }
    }
}

impl<'a> IntoIterator for &'a Resources {
    type Item = &'a Resource;
    type IntoIter = std::slice::Iter<'a, Resource>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for Resources {
    type Item = Resource;
    type IntoIter = std::vec::IntoIter<Resource>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> std::iter::Sum<&'a Resources> for Resources {
    fn sum<I: Iterator<Item = &'a Resources>>(iter: I) -> Resources {
        let mut out = Resources::new();
        for r in iter {
            out += r;
        }
        out
    }
}

// Only the assigning operators: a binary `Add` would make `r.add(&x)` resolve to the
// operator wherever `std::ops::Add` is imported, instead of the method above.
impl AddAssign<&Resources> for Resources {
    fn add_assign(&mut self, rhs: &Resources) {
        Resources::add(self, rhs);
    }
}

impl AddAssign for Resources {
    fn add_assign(&mut self, rhs: Resources) {
        self.extend(rhs);
    }
}

/// Saturating: see [`Resources`].
impl SubAssign<&Resources> for Resources {
    fn sub_assign(&mut self, rhs: &Resources) {
        self.subtract(rhs);
    }
}

impl SubAssign for Resources {
    fn sub_assign(&mut self, rhs: Resources) {
        self.subtract(&rhs);
    }
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resources({self})")
    }
}
