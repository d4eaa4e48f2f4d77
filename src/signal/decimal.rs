//! Exact decimals for quantities and prices.
//!
//! A quantity travels as text from TradingView to the broker; it must never pass through a binary
//! float, where `0.1` is not `0.1`. [`Decimal`] keeps the value exactly as a normalized decimal
//! string (no exponent, no leading or trailing zeros) and only exists when it is positive and
//! inside its bounds.

use std::fmt;

/// Bounds for one kind of decimal field.
#[derive(Debug, Clone, Copy)]
pub struct DecimalBounds {
    /// At most this many digits before the point.
    pub max_integer_digits: usize,
    /// At most this many digits after the point.
    pub max_fraction_digits: usize,
}

/// Quantities: below one billion, at most 10 decimal places.
pub const QUANTITY_BOUNDS: DecimalBounds = DecimalBounds {
    max_integer_digits: 9,
    max_fraction_digits: 10,
};

/// Prices: below one trillion, at most 10 decimal places.
pub const PRICE_BOUNDS: DecimalBounds = DecimalBounds {
    max_integer_digits: 12,
    max_fraction_digits: 10,
};

/// A positive decimal, normalized: `"0.50"`, `"5e-1"` and `".5"`-free spellings of one half all
/// become `"0.5"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecimalError {
    NotANumber,
    NotPositive,
    TooLarge,
    TooPrecise,
}

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecimalError::NotANumber => "must be a decimal number such as 10 or 0.5",
            DecimalError::NotPositive => "must be greater than zero",
            DecimalError::TooLarge => "is larger than allowed",
            DecimalError::TooPrecise => "has more decimal places than allowed",
        })
    }
}

impl Decimal {
    /// Parses JSON number syntax (`-?digits[.digits][e[+-]digits]`, no spaces, no `+`, no leading
    /// zeros) and checks sign and bounds.
    pub fn parse(text: &str, bounds: DecimalBounds) -> Result<Decimal, DecimalError> {
        let parts = split_number(text).ok_or(DecimalError::NotANumber)?;
        // Significant digits of integer and fraction parts, with the decimal point moved by the
        // exponent: value = digits * 10^(point_shift) where digits has no leading zeros.
        let mut digits = String::with_capacity(parts.integer.len() + parts.fraction.len() + 1);
        digits.push_str(parts.integer);
        digits.push_str(parts.fraction);
        let leading_zeros = digits.len() - digits.trim_start_matches('0').len();
        digits.drain(..leading_zeros);
        if digits.is_empty() {
            return Err(DecimalError::NotPositive);
        }
        if parts.negative {
            return Err(DecimalError::NotPositive);
        }
        let trailing_zeros = digits.len() - digits.trim_end_matches('0').len();
        digits.truncate(digits.len() - trailing_zeros);
        // Exponent of the last kept digit.
        let exponent: i64 =
            parts
                .exponent
                .parse::<i64>()
                .unwrap_or(if parts.exponent.starts_with('-') {
                    i64::MIN / 2
                } else {
                    i64::MAX / 2
                });
        let last_digit_exponent = exponent - parts.fraction.len() as i64 + trailing_zeros as i64;
        let fraction_digits = (-last_digit_exponent).max(0);
        let integer_digits = digits.len() as i64 + last_digit_exponent;
        if integer_digits > bounds.max_integer_digits as i64 {
            return Err(DecimalError::TooLarge);
        }
        if fraction_digits > bounds.max_fraction_digits as i64 {
            return Err(DecimalError::TooPrecise);
        }
        // Both counts are now small, so building the string is cheap.
        let text = if last_digit_exponent >= 0 {
            digits + &"0".repeat(last_digit_exponent as usize)
        } else {
            let fraction_len = (-last_digit_exponent) as usize;
            if digits.len() > fraction_len {
                // The point inserted in place (the string has room for it).
                digits.insert(digits.len() - fraction_len, '.');
                digits
            } else {
                format!("0.{}{}", "0".repeat(fraction_len - digits.len()), digits)
            }
        };
        Ok(Decimal(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

struct NumberParts<'a> {
    negative: bool,
    integer: &'a str,
    fraction: &'a str,
    exponent: &'a str,
}

fn split_number(text: &str) -> Option<NumberParts<'_>> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, "0"),
    };
    let (integer, fraction) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(integer) || (integer.len() > 1 && integer.starts_with('0')) {
        return None;
    }
    if mantissa.contains('.') && !all_digits(fraction) {
        return None;
    }
    let exponent_digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if !all_digits(exponent_digits) {
        return None;
    }
    Some(NumberParts {
        negative,
        integer,
        fraction,
        exponent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_exactly() {
        let cases = [
            ("10", "10"),
            ("0.5", "0.5"),
            ("0.50", "0.5"),
            ("5e-1", "0.5"),
            ("1E+2", "100"),
            ("1.25e1", "12.5"),
            ("0.1", "0.1"),
            ("0.0000000001", "0.0000000001"),
            ("412.35", "412.35"),
            ("999999999.9999999999", "999999999.9999999999"),
            ("100e-2", "1"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Decimal::parse(input, QUANTITY_BOUNDS).map(|d| d.0),
                Ok(expected.to_string()),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        use DecimalError::*;
        let cases = [
            ("", NotANumber),
            (" 1", NotANumber),
            ("1 ", NotANumber),
            ("+1", NotANumber),
            ("01", NotANumber),
            ("1.", NotANumber),
            (".5", NotANumber),
            ("1e", NotANumber),
            ("NaN", NotANumber),
            ("Infinity", NotANumber),
            ("0x10", NotANumber),
            ("1,5", NotANumber),
            ("0", NotPositive),
            ("-0", NotPositive),
            ("0.000", NotPositive),
            ("-1", NotPositive),
            ("0e5", NotPositive),
            ("1000000000", TooLarge),
            ("1e400", TooLarge),
            ("1e99999999999999999999999", TooLarge),
            ("1234567890123456789012345678901234567890", TooLarge),
            ("0.00000000001", TooPrecise),
            ("1e-400", TooPrecise),
            ("1e-99999999999999999999999", TooPrecise),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Decimal::parse(input, QUANTITY_BOUNDS),
                Err(expected),
                "{input:?}"
            );
        }
    }
}
