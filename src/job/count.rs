//! Parsing of counts written by people: `1000000000`, `1e9`, `10^9`, `1_000_000_000`, `2.5e6`.
//!
//! Every count a flag takes goes through [`parse_count`], so all subcommands accept the same forms.

/// A count could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CountError {
    #[error("'{0}' is not a count (write e.g. 1000000000, 1e9, 10^9 or 1_000_000_000)")]
    NotANumber(String),
    #[error("'{0}' is not a whole number")]
    NotWhole(String),
    #[error("'{0}' is too large")]
    TooLarge(String),
}

/// Parses a non-negative whole count.
pub fn parse_count(text: &str) -> Result<u64, CountError> {
    let cleaned: String = text.trim().chars().filter(|&c| c != '_').collect();
    let bad = || CountError::NotANumber(text.to_string());
    if cleaned.is_empty() || cleaned.starts_with('-') || cleaned.starts_with('+') {
        return Err(bad());
    }
    if let Some((base, exp)) = cleaned.split_once('^') {
        let base: u64 = base.parse().map_err(|_| bad())?;
        let exp: u32 = exp.parse().map_err(|_| bad())?;
        return base
            .checked_pow(exp)
            .ok_or_else(|| CountError::TooLarge(text.to_string()));
    }
    if let Ok(n) = cleaned.parse::<u64>() {
        return Ok(n);
    }
    // Scientific or decimal notation: mantissa digits, optional fraction, optional exponent.
    let lower = cleaned.to_ascii_lowercase();
    let (mantissa, exp) = match lower.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().map_err(|_| bad())?),
        None => (lower.as_str(), 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !all_digits(int_part)
        || !all_digits(frac_part)
    {
        return Err(bad());
    }
    // value = digits · 10^(exp − len(frac)), computed exactly in u128.
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let mut value: u128 = if digits.is_empty() {
        0
    } else {
        digits
            .parse()
            .map_err(|_| CountError::TooLarge(text.to_string()))?
    };
    let mut shift = exp - frac_part.len() as i32;
    while shift > 0 {
        value = value
            .checked_mul(10)
            .ok_or_else(|| CountError::TooLarge(text.to_string()))?;
        if value > u128::from(u64::MAX) {
            return Err(CountError::TooLarge(text.to_string()));
        }
        shift -= 1;
    }
    while shift < 0 {
        if value % 10 != 0 {
            return Err(CountError::NotWhole(text.to_string()));
        }
        value /= 10;
        shift += 1;
    }
    u64::try_from(value).map_err(|_| CountError::TooLarge(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        for t in [
            "1000000000",
            "1e9",
            "1E9",
            "10^9",
            "1_000_000_000",
            "1.0e9",
            "0.001e12",
        ] {
            assert_eq!(parse_count(t), Ok(1_000_000_000), "{t}");
        }
        assert_eq!(parse_count("2.5e6"), Ok(2_500_000));
        assert_eq!(parse_count("0"), Ok(0));
        assert_eq!(parse_count("2^52"), Ok(1 << 52));
    }

    #[test]
    fn refused_forms() {
        for t in [
            "banana", "", "-5", "1e", "e9", "1.5", "10^", "1e400", "1..2", "1e-3",
        ] {
            assert!(parse_count(t).is_err(), "{t}");
        }
        assert!(matches!(
            parse_count("99999999999999999999999"),
            Err(CountError::TooLarge(_))
        ));
    }
}
