//! Inclusive integer ranges (ports and the like), kept sorted and coalesced so that equal
//! sets of values compare equal.

use std::fmt;
use std::ops::{AddAssign, SubAssign};

use super::error::ResourceError;

/// The values `begin..=end`.
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
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct Range {
    pub begin: u64,
    pub end: u64,
}

impl Range {
    pub const fn new(begin: u64, end: u64) -> Self {
        Range { begin, end }
    }

    /// Number of values; saturates at u64::MAX for the full range. 0 if begin > end.
    pub const fn len(&self) -> u64 {
        if self.begin > self.end {
            0
        } else {
            (self.end - self.begin).saturating_add(1)
        }
    }

    pub const fn is_empty(&self) -> bool {
        self.begin > self.end
    }

    pub const fn contains(&self, value: u64) -> bool {
        self.begin <= value && value <= self.end
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.begin, self.end)
    }
}

/// A set of integers as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(
    Clone, Default, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct Ranges(Vec<Range>);

/// A syntax error inside a ranges literal: the offending range and why.
pub(crate) struct RangeSyntaxError {
    pub range: String,
    pub reason: String,
}

/// Parses `[b-e,b-e,...]`; whitespace around numbers is allowed, `[]` is empty.
pub(crate) fn parse_ranges(text: &str) -> Result<Ranges, RangeSyntaxError> {
    let t = text.trim();
    let Some(inner) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return Err(RangeSyntaxError {
            range: t.to_owned(),
            reason: "ranges are written as [begin-end,...]".to_owned(),
        });
    };
    let mut ranges = Ranges::new();
    if inner.trim().is_empty() {
        return Ok(ranges);
    }
    for item in inner.split(',') {
        let item = item.trim();
        let bad = |reason: String| RangeSyntaxError {
            range: format!("[{item}]"),
            reason,
        };
        let Some((begin, end)) = item.split_once('-') else {
            return Err(bad("a range is written as begin-end".to_owned()));
        };
        let number = |token: &str| -> Result<u64, RangeSyntaxError> {
            let token = token.trim();
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!("'{token}' is not a number")));
            }
            token
                .parse::<u64>()
                .map_err(|_| bad(format!("'{token}' is too large")))
        };
        let (begin, end) = (number(begin)?, number(end)?);
        if begin > end {
            return Err(bad(format!("begin {begin} > end {end}")));
        }
        ranges.add_range(Range { begin, end });
    }
    Ok(ranges)
}

impl Ranges {
    pub const fn new() -> Self {
        Ranges(Vec::new())
    }

    /// `begin..=end`; empty if begin > end.
    pub fn from_range(begin: u64, end: u64) -> Self {
        let mut r = Ranges::new();
        r.add_range(Range { begin, end });
        r
    }

    /// Parses the Mesos form `[31000-32000,33000-33000]`.
    pub fn parse(text: &str) -> Result<Ranges, ResourceError> {
        parse_ranges(text).map_err(|e| ResourceError::InvalidRange {
            range: e.range,
            text: text.trim().to_owned(),
            reason: e.reason,
        })
    }

    /// The sorted, coalesced ranges.
    pub fn as_slice(&self) -> &[Range] {
        &self.0
    }

    /// Number of values (not ranges); saturates at u64::MAX.
    pub fn len(&self) -> u64 {
        self.0.iter().fold(0u64, |n, r| n.saturating_add(r.len()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().flat_map(|r| r.begin..=r.end)
    }

    pub fn contains_value(&self, value: u64) -> bool {
        let i = self.0.partition_point(|r| r.end < value);
        self.0.get(i).is_some_and(|r| r.contains(value))
    }

    /// Whether every value of `other` is in `self`.
    pub fn contains(&self, other: &Ranges) -> bool {
        other.0.iter().all(|o| {
            let i = self.0.partition_point(|r| r.end < o.begin);
            self.0
                .get(i)
                .is_some_and(|r| r.begin <= o.begin && o.end <= r.end)
        })
    }

    /// Adds one range (ignored if begin > end), keeping the list coalesced.
    pub fn add_range(&mut self, range: Range) {
        if range.is_empty() {
            return;
        }
        let (mut begin, mut end) = (range.begin, range.end);
        // First range that ends at or after begin-1 (touching ranges merge).
        let start = self.0.partition_point(|r| r.end.saturating_add(1) < begin);
        let mut stop = start;
        while stop < self.0.len() && self.0[stop].begin <= end.saturating_add(1) {
            begin = begin.min(self.0[stop].begin);
            end = end.max(self.0[stop].end);
            stop += 1;
        }
        self.0.splice(start..stop, [Range { begin, end }]);
    }

    /// Union with `other`.
    pub fn add(&mut self, other: &Ranges) {
        for r in &other.0 {
            self.add_range(*r);
        }
    }

    /// Removes the values of one range.
    pub fn subtract_range(&mut self, cut: Range) {
        if cut.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for r in &self.0 {
            if r.end < cut.begin || r.begin > cut.end {
                out.push(*r);
                continue;
            }
            if r.begin < cut.begin {
                out.push(Range {
                    begin: r.begin,
                    end: cut.begin - 1,
                });
            }
            if r.end > cut.end {
                out.push(Range {
                    begin: cut.end + 1,
                    end: r.end,
                });
            }
        }
        self.0 = out;
    }

    /// Difference: removes every value of `other`.
    pub fn subtract(&mut self, other: &Ranges) {
        for r in &other.0 {
            self.subtract_range(*r);
        }
    }

    /// The values in both.
    pub fn intersection(&self, other: &Ranges) -> Ranges {
        let mut out = self.clone();
        let mut outside = Ranges::from_range(0, u64::MAX);
        outside.subtract(other);
        out.subtract(&outside);
        out
    }

    /// The first `n` values (lowest first), e.g. to pick ports; `None` if there are fewer.
    pub fn take(&self, n: u64) -> Option<Ranges> {
        if self.len() < n {
            return None;
        }
        let mut left = n;
        let mut out = Vec::new();
        for r in &self.0 {
            if left == 0 {
                break;
            }
            let k = left.min(r.len());
            out.push(Range {
                begin: r.begin,
                end: r.begin + (k - 1),
            });
            left -= k;
        }
        Some(Ranges(out))
    }
}

impl FromIterator<Range> for Ranges {
    fn from_iter<I: IntoIterator<Item = Range>>(iter: I) -> Self {
        let mut r = Ranges::new();
        for range in iter {
            r.add_range(range);
        }
        r
    }
}

impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Debug for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ranges({self})")
    }
}

// Only the assigning operators, for the reason given on `Resources`.
impl AddAssign<&Ranges> for Ranges {
    fn add_assign(&mut self, rhs: &Ranges) {
        Ranges::add(self, rhs);
    }
}

impl SubAssign<&Ranges> for Ranges {
    fn sub_assign(&mut self, rhs: &Ranges) {
        self.subtract(rhs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> Ranges {
        Ranges::parse(text).unwrap()
    }

    #[test]
    fn parses_and_coalesces() {
        assert_eq!(r("[31000-32000,33000-33000]").as_slice().len(), 2);
        assert_eq!(r("[1-2,3-4]").to_string(), "[1-4]");
        assert_eq!(r("[5-9, 1-6]").to_string(), "[1-9]");
        assert_eq!(r("[ 1 - 2 ,10-10]").to_string(), "[1-2,10-10]");
        assert!(r("[]").is_empty());
        assert_eq!(r("[0-18446744073709551615]").len(), u64::MAX);
    }

    #[test]
    fn errors_name_the_range() {
        let err = |t: &str| Ranges::parse(t).unwrap_err().to_string();
        assert_eq!(
            err("[5-1]"),
            "invalid range '[5-1]' in '[5-1]': begin 5 > end 1"
        );
        assert_eq!(
            err("[1-2,x-3]"),
            "invalid range '[x-3]' in '[1-2,x-3]': 'x' is not a number"
        );
        assert!(err("[7]").contains("'[7]'"));
        assert!(err("1-2").contains("[begin-end,...]"));
        assert!(err("[1-2").contains("'[1-2'"));
        assert!(err("[1-2,]").contains("'[]'"));
        assert!(err("[1-99999999999999999999]").contains("too large"));
    }

    #[test]
    fn set_operations() {
        let mut a = r("[1-10,20-30]");
        assert!(a.contains(&r("[2-3,25-30]")));
        assert!(!a.contains(&r("[9-21]")));
        assert!(a.contains_value(20) && !a.contains_value(15));
        a.subtract(&r("[5-25]"));
        assert_eq!(a.to_string(), "[1-4,26-30]");
        a.add(&r("[5-5,31-31]"));
        assert_eq!(a.to_string(), "[1-5,26-31]");
        assert_eq!(a.len(), 11);
        assert_eq!(
            a.iter().take(6).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 26]
        );
        assert_eq!(r("[1-10]").intersection(&r("[5-20]")), r("[5-10]"));
        let mut full = Ranges::from_range(0, u64::MAX);
        full.subtract_range(Range::new(0, 0));
        full.subtract_range(Range::new(u64::MAX, u64::MAX));
        assert_eq!(full.as_slice(), &[Range::new(1, u64::MAX - 1)]);
    }

    #[test]
    fn take_picks_lowest_values() {
        let a = r("[31000-31001,31005-31010]");
        assert_eq!(a.take(3), Some(r("[31000-31001,31005-31005]")));
        assert_eq!(a.take(0), Some(Ranges::new()));
        assert_eq!(a.take(8), Some(a.clone()));
        assert_eq!(a.take(9), None);
    }
}
