//! Fixed-point scalar quantities with three decimals (milli-units), the precision Mesos
//! rounds every scalar resource to. Exact arithmetic, no float drift in the allocator.

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::str::FromStr;

use super::error::ResourceError;

/// A scalar quantity in thousandths: `Scalar::from_milli(1500)` is 1.5.
///
/// Arithmetic saturates at the i64 bounds instead of overflowing. Scalar resources are
/// never negative; attribute scalars may be.
#[derive(
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct Scalar(pub i64);

impl Scalar {
    pub const ZERO: Scalar = Scalar(0);
    pub const MAX: Scalar = Scalar(i64::MAX);
    /// The largest magnitude accepted from text or JSON: 10^12 units. Up to here a value
    /// survives the float in the JSON form exactly (Mesos itself stores doubles).
    pub const PARSE_LIMIT: Scalar = Scalar(1_000_000_000_000_000);

    pub const fn from_milli(milli: i64) -> Self {
        Scalar(milli)
    }

    /// Whole units; saturates at [`Scalar::MAX`].
    pub const fn from_units(units: u64) -> Self {
        if units > (i64::MAX / 1000) as u64 {
            Scalar::MAX
        } else {
            Scalar(units as i64 * 1000)
        }
    }

    /// Rounds to three decimals as Mesos does; `None` for NaN, infinities and values out
    /// of range.
    pub fn from_f64(value: f64) -> Option<Self> {
        let milli = (value * 1000.0).round();
        // i64::MAX as f64 rounds up to 2^63, so the bound is exclusive.
        if !milli.is_finite() || milli >= i64::MAX as f64 || milli < i64::MIN as f64 {
            return None;
        }
        Some(Scalar(milli as i64))
    }

    pub const fn milli(self) -> i64 {
        self.0
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// `self - other`, but never below zero.
    pub const fn saturating_sub_to_zero(self, other: Scalar) -> Scalar {
        let d = self.0.saturating_sub(other.0);
        Scalar(if d < 0 { 0 } else { d })
    }
}

/// Parses a decimal number into milli-units, rounding half away from zero at the fourth
/// decimal. The error is a reason that names `token`.
pub(crate) fn parse_milli(token: &str, allow_negative: bool) -> Result<i64, String> {
    let t = token.trim();
    if t.is_empty() {
        return Err("empty value where a number was expected".to_owned());
    }
    let (negative, body) = match t.as_bytes()[0] {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let milli = match parse_decimal(body) {
        Some(Some(m)) => m,
        Some(None) => return Err(format!("'{t}' is too large")),
        None => {
            // Exponent forms such as 1e3, as Mesos' numify accepts them; the sign was
            // taken above, so a second one is not a number.
            let looks_numeric = body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
                && body
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b));
            match body.parse::<f64>().ok().filter(|_| looks_numeric) {
                Some(v) => match Scalar::from_f64(v) {
                    Some(s) => s.0,
                    None => return Err(format!("'{t}' is too large")),
                },
                None => return Err(format!("'{t}' is not a number")),
            }
        }
    };
    if milli > Scalar::PARSE_LIMIT.0 {
        return Err(format!(
            "'{t}' is too large: at most {}",
            Scalar::PARSE_LIMIT
        ));
    }
    let milli = if negative { -milli } else { milli };
    if milli < 0 && !allow_negative {
        return Err(format!("'{t}' is negative: a scalar must be >= 0"));
    }
    Ok(milli)
}

/// `None`: not a plain decimal. `Some(None)`: a decimal that does not fit.
fn parse_decimal(body: &str) -> Option<Option<i64>> {
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut milli: i64 = 0;
    for b in int.bytes() {
        milli = match milli
            .checked_mul(10)
            .and_then(|m| m.checked_add(i64::from(b - b'0')))
        {
            Some(m) => m,
            None => return Some(None),
        };
    }
    let mut digits = frac.bytes().map(|b| i64::from(b - b'0'));
    let mut fraction = 0;
    for _ in 0..3 {
        fraction = fraction * 10 + digits.next().unwrap_or(0);
    }
    if digits.next().is_some_and(|d| d >= 5) {
        fraction += 1;
    }
    Some(
        milli
            .checked_mul(1000)
            .and_then(|m| m.checked_add(fraction)),
    )
}

impl FromStr for Scalar {
    type Err = ResourceError;

    /// "1.5", "0.001", "24"; more than three decimals are rounded; negative, empty and
    /// non-numeric text is an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_milli(s, false)
            .map(Scalar)
            .map_err(|reason| ResourceError::InvalidScalar { reason })
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let (int, frac) = (abs / 1000, abs % 1000);
        if frac == 0 {
            write!(f, "{sign}{int}")
        } else {
            let digits = format!("{frac:03}");
            write!(f, "{sign}{int}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scalar({self})")
    }
}

impl Add for Scalar {
    type Output = Scalar;
    fn add(self, rhs: Scalar) -> Scalar {
        Scalar(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Scalar {
    type Output = Scalar;
    fn sub(self, rhs: Scalar) -> Scalar {
        Scalar(self.0.saturating_sub(rhs.0))
    }
}

impl AddAssign for Scalar {
    fn add_assign(&mut self, rhs: Scalar) {
        *self = *self + rhs;
    }
}

impl SubAssign for Scalar {
    fn sub_assign(&mut self, rhs: Scalar) {
        *self = *self - rhs;
    }
}

impl std::iter::Sum for Scalar {
    fn sum<I: Iterator<Item = Scalar>>(iter: I) -> Scalar {
        iter.fold(Scalar::ZERO, Add::add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Scalar {
        text.parse().unwrap()
    }

    #[test]
    fn parses_decimals() {
        assert_eq!(s("1.5").milli(), 1500);
        assert_eq!(s("0.001").milli(), 1);
        assert_eq!(s("24").milli(), 24_000);
        assert_eq!(s(" 2 ").milli(), 2000);
        assert_eq!(s(".5").milli(), 500);
        assert_eq!(s("1.").milli(), 1000);
        assert_eq!(s("+3").milli(), 3000);
        assert_eq!(s("1e3").milli(), 1_000_000);
        assert_eq!(s("-0").milli(), 0);
    }

    #[test]
    fn rounds_to_three_decimals() {
        assert_eq!(s("1.0004").milli(), 1000);
        assert_eq!(s("1.0005").milli(), 1001);
        assert_eq!(s("0.0009999").milli(), 1);
        assert_eq!(parse_milli("-1.0005", true), Ok(-1001));
    }

    #[test]
    fn rejects_bad_numbers_naming_them() {
        let err = |t: &str| t.parse::<Scalar>().unwrap_err().to_string();
        assert_eq!(err("abc"), "invalid scalar: 'abc' is not a number");
        assert_eq!(
            err("-1"),
            "invalid scalar: '-1' is negative: a scalar must be >= 0"
        );
        assert!(err("").contains("empty"));
        assert!(err("NaN").contains("'NaN' is not a number"));
        assert!(err("inf").contains("'inf' is not a number"));
        assert!(err("1.2.3").contains("'1.2.3'"));
        assert!(err(".").contains("'.'"));
        assert!(err("99999999999999999999").contains("too large"));
        assert!(err("1e300").contains("too large"));
        assert!(err("--1").contains("'--1' is not a number"));
        assert!(err("+-1").contains("not a number"));
        assert!(err("--1").contains("'--1' is not a number"));
        assert!(err("+-1").contains("not a number"));
    }

    #[test]
    fn displays_minimal_decimals() {
        assert_eq!(Scalar::from_milli(1500).to_string(), "1.5");
        assert_eq!(Scalar::from_milli(2000).to_string(), "2");
        assert_eq!(Scalar::from_milli(1).to_string(), "0.001");
        assert_eq!(Scalar::from_milli(10).to_string(), "0.01");
        assert_eq!(Scalar::from_milli(-1500).to_string(), "-1.5");
        assert_eq!(Scalar::ZERO.to_string(), "0");
        let limit = Scalar::PARSE_LIMIT;
        assert_eq!(limit.to_string().parse::<Scalar>().unwrap(), limit);
        let over = limit + Scalar::from_milli(1);
        assert!(over.to_string().parse::<Scalar>().is_err());
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Scalar::from_units(1) + Scalar::from_milli(500), s("1.5"));
        assert_eq!(Scalar::MAX + Scalar::from_units(1), Scalar::MAX);
        assert_eq!(Scalar::from_units(u64::MAX), Scalar::MAX);
        assert_eq!(s("1").saturating_sub_to_zero(s("2")), Scalar::ZERO);
        let mut x = s("2");
        x -= s("0.5");
        x += s("0.25");
        assert_eq!(x, s("1.75"));
        assert_eq!(s("1.5").as_f64(), 1.5);
        assert_eq!(Scalar::from_f64(f64::NAN), None);
    }
}
