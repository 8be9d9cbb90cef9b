//! Exact arithmetic on Kubernetes quantities.
//!
//! A quantity is parsed into thousandths of its unit (millicores for cpu, millibytes for
//! memory and storage) as an `i128`, so that `500m`, `1.5`, `64Gi` and `1e3` are all exact and
//! sums over hundreds of thousands of systems cannot overflow. Only the operator's edges
//! convert: the planner and the accounts work on integers.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::fmt;

/// Why a quantity string could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantityError {
    /// The text that was refused.
    pub input: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid quantity {:?}: {}", self.input, self.problem)
    }
}

impl std::error::Error for QuantityError {}

/// Parses a quantity into thousandths of its unit, rounding a finer fraction up (as Kubernetes
/// does: `0.1m` is `1m`).
pub fn parse_milli(text: &str) -> Result<i128, QuantityError> {
    let err = |problem| QuantityError { input: text.to_owned(), problem };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let (negative, s) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(err("no digits"));
    }
    // Zeros that carry no value do not count towards the digit limit (`000001`, `1.50000`).
    let (int_part, frac_part) = (int_part.trim_start_matches('0'), frac_part.trim_end_matches('0'));
    if int_part.len() + frac_part.len() > 30 {
        return Err(err("too many digits"));
    }
    // mantissa / 10^scale is the number.
    let digits = format!("{int_part}{frac_part}");
    let mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| err("not a number"))? };
    let scale = frac_part.len() as i32;
    let (multiplier, exp10): (i128, i32) = match suffix {
        "" => (1, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        s if s.starts_with(['e', 'E']) => {
            let e: i32 = s[1..].parse().map_err(|_| err("bad exponent"))?;
            if e > 30 && mantissa != 0 {
                return Err(err("exponent out of range"));
            }
            (1, e.max(-1000))
        }
        _ => return Err(err("unknown suffix (use n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei)")),
    };
    // value in milli = mantissa * multiplier * 10^(exp10 + 3 - scale)
    let shift = exp10 + 3 - scale;
    let base = mantissa.checked_mul(multiplier).ok_or_else(|| err("too large"))?;
    let milli = if base == 0 {
        0
    } else if shift >= 0 {
        10i128.checked_pow(shift as u32).and_then(|p| base.checked_mul(p)).ok_or_else(|| err("too large"))?
    } else {
        // A divisor beyond i128 leaves less than a thousandth: rounded up to one.
        match 10i128.checked_pow((-shift) as u32) {
            Some(p) => (base + p - 1) / p,
            None => 1,
        }
    };
    if milli > i64::MAX as i128 * 1000 {
        return Err(err("above 2^63-1"));
    }
    Ok(if negative { -milli } else { milli })
}

/// An amount in thousandths of its unit, as [`milli`] parses it. Its methods are the one place
/// where an amount becomes whole units: a requirement rounds up, a capacity rounds down, and
/// below zero is zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Milli(pub i128);

impl Milli {
    /// Whole units rounded up (a requirement: never ask for less than needed); saturating.
    pub fn units_up(self) -> u64 {
        u64::try_from(self.0.max(0).saturating_add(999) / 1000).unwrap_or(u64::MAX)
    }

    /// Whole units rounded down (a capacity: never promise more than there is); saturating.
    pub fn units_down(self) -> u64 {
        u64::try_from(self.0.max(0) / 1000).unwrap_or(u64::MAX)
    }

    /// The thousandths themselves (millicores for cpu); saturating.
    pub fn millis(self) -> u64 {
        u64::try_from(self.0.max(0)).unwrap_or(u64::MAX)
    }

    /// Units as a float, for metrics.
    pub fn units(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

/// Parses a `Quantity` into thousandths of its unit.
pub fn milli(q: &Quantity) -> Result<i128, QuantityError> {
    parse_milli(&q.0)
}

/// Parses an optional `Quantity`; absent is zero.
pub fn milli_or_zero(q: Option<&Quantity>) -> Result<i128, QuantityError> {
    q.map_or(Ok(0), milli)
}

/// Formats thousandths of a core as a cpu quantity: whole cores when exact (`64`), else
/// millicores (`1500m`).
pub fn format_cpu(milli: i128) -> Quantity {
    if milli % 1000 == 0 { Quantity((milli / 1000).to_string()) } else { Quantity(format!("{milli}m")) }
}

/// Formats thousandths of a byte as a byte quantity with the largest binary suffix that is
/// exact (`256Gi`), whole bytes rounded up otherwise.
pub fn format_bytes(milli: i128) -> Quantity {
    let bytes = if milli >= 0 { (milli + 999) / 1000 } else { milli / 1000 };
    const SUFFIXES: [(&str, i128); 6] =
        [("Ei", 1 << 60), ("Pi", 1 << 50), ("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)];
    if bytes != 0 {
        for (suffix, unit) in SUFFIXES {
            if bytes % unit == 0 {
                return Quantity(format!("{}{suffix}", bytes / unit));
            }
        }
    }
    Quantity(bytes.to_string())
}

/// Formats thousandths of a whole-unit count (gpu) as a plain quantity.
pub fn format_count(milli: i128) -> Quantity {
    format_cpu(milli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_units_round_up_for_requirements_and_down_for_capacities() {
        assert_eq!(Milli(1).units_up(), 1);
        assert_eq!(Milli(1000).units_up(), 1);
        assert_eq!(Milli(1001).units_up(), 2);
        assert_eq!(Milli(1999).units_down(), 1);
        assert_eq!(Milli(-5).units_up(), 0);
        assert_eq!(Milli(-5).millis(), 0);
        assert_eq!(Milli(i128::MAX).units_up(), u64::MAX);
        assert_eq!(Milli(1500).units(), 1.5);
    }

    #[test]
    fn parses_every_suffix_form_exactly() {
        assert_eq!(parse_milli("64").unwrap(), 64_000);
        assert_eq!(parse_milli("500m").unwrap(), 500);
        assert_eq!(parse_milli("1.5").unwrap(), 1_500);
        assert_eq!(parse_milli("+2").unwrap(), 2_000);
        assert_eq!(parse_milli(".5").unwrap(), 500);
        assert_eq!(parse_milli("1k").unwrap(), 1_000_000);
        assert_eq!(parse_milli("1e3").unwrap(), 1_000_000);
        assert_eq!(parse_milli("1E-3").unwrap(), 1);
        assert_eq!(parse_milli("1Ki").unwrap(), 1_024_000);
        assert_eq!(parse_milli("64Gi").unwrap(), 64 * (1 << 30) * 1000);
        assert_eq!(parse_milli("1.5Gi").unwrap(), 1536 * (1 << 20) * 1000);
        assert_eq!(parse_milli("2Ti").unwrap(), 2 * (1i128 << 40) * 1000);
        assert_eq!(parse_milli("3G").unwrap(), 3_000_000_000_000);
        assert_eq!(parse_milli("-4").unwrap(), -4_000);
        assert_eq!(parse_milli("1500000u").unwrap(), 1_500);
        assert_eq!(parse_milli("1n").unwrap(), 1, "rounded up to a thousandth");
        assert_eq!(parse_milli("0000000000000000000000000000001").unwrap(), 1_000);
        assert_eq!(parse_milli("1.000000000000000000000000000000").unwrap(), 1_000);
        assert_eq!(parse_milli("0").unwrap(), 0);
        assert_eq!(parse_milli("0.0").unwrap(), 0);
        assert_eq!(parse_milli("0e99").unwrap(), 0);
        assert_eq!(parse_milli("1e-40").unwrap(), 1, "a tiny positive amount is rounded up, not refused");
    }

    #[test]
    fn rounds_finer_fractions_up_like_kubernetes() {
        assert_eq!(parse_milli("0.1m").unwrap(), 1);
        assert_eq!(parse_milli("0.0001").unwrap(), 1);
        assert_eq!(parse_milli("1.0001").unwrap(), 1_001);
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in ["", "abc", "1x", "Gi", ".", "1.2.3", "1e", "1e99", "99999999999999999999999999999999"] {
            assert!(parse_milli(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_cpu(64_000).0, "64");
        assert_eq!(format_cpu(1_500).0, "1500m");
        assert_eq!(format_bytes(parse_milli("256Gi").unwrap()).0, "256Gi");
        assert_eq!(format_bytes(parse_milli("1536Mi").unwrap()).0, "1536Mi");
        assert_eq!(format_bytes(parse_milli("1000").unwrap()).0, "1000");
        assert_eq!(format_bytes(0).0, "0");
        for text in ["7Ti", "3Gi", "5Mi", "12Ki"] {
            assert_eq!(format_bytes(parse_milli(text).unwrap()).0, text);
        }
    }
}
