//! RFC 3339 text of UTC instants, written digit by digit: `to_rfc3339_opts(format, true)` byte
//! for byte without chrono's formatting machinery, for the places that run per request (the
//! signal's timestamp, `received_at`, the log line's timestamp).

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

/// Appends `t.to_rfc3339_opts(format, true)` to `out` and returns true; returns false and writes
/// nothing for what it leaves to chrono: years outside 0..=9999, leap seconds, and formats other
/// than `AutoSi`, `Millis` and `Micros`.
pub fn push_utc(out: &mut String, t: &DateTime<Utc>, format: SecondsFormat) -> bool {
    // The accessors of `DateTime` each convert to local time first; UTC needs no conversion.
    let t = t.naive_utc();
    let nanos = t.nanosecond();
    let year = t.year();
    let fraction_digits = match format {
        SecondsFormat::AutoSi if nanos == 0 => 0,
        SecondsFormat::AutoSi if nanos.is_multiple_of(1_000_000) => 3,
        SecondsFormat::AutoSi if nanos.is_multiple_of(1_000) => 6,
        SecondsFormat::AutoSi => 9,
        SecondsFormat::Millis => 3,
        SecondsFormat::Micros => 6,
        _ => return false,
    };
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return false;
    }
    push_digits(out, year as u32, 4);
    out.push('-');
    push_digits(out, t.month(), 2);
    out.push('-');
    push_digits(out, t.day(), 2);
    out.push('T');
    push_digits(out, t.hour(), 2);
    out.push(':');
    push_digits(out, t.minute(), 2);
    out.push(':');
    push_digits(out, t.second(), 2);
    if fraction_digits > 0 {
        out.push('.');
        push_digits(out, nanos / 10u32.pow(9 - fraction_digits), fraction_digits);
    }
    out.push('Z');
    true
}

/// `t.to_rfc3339_opts(format, true)`.
pub fn utc(t: &DateTime<Utc>, format: SecondsFormat) -> String {
    let mut out = String::with_capacity(32);
    if push_utc(&mut out, t, format) {
        out
    } else {
        t.to_rfc3339_opts(format, true)
    }
}

/// The last `width` decimal digits of `value`, zero-padded.
fn push_digits(out: &mut String, value: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        out.push(char::from(b'0' + (value / div % 10) as u8));
        div /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #[test]
        fn utc_is_what_chrono_writes(
            seconds in -62_167_219_200i64..=253_402_300_799i64,
            nanos in proptest::prop_oneof![
                proptest::strategy::Just(0u32),
                (0u32..1000).prop_map(|m| m * 1_000_000),
                (0u32..1_000_000).prop_map(|u| u * 1_000),
                0u32..1_000_000_000,
                1_000_000_000u32..2_000_000_000,
            ],
        ) {
            if let Some(t) = DateTime::<Utc>::from_timestamp(seconds, nanos) {
                for format in [SecondsFormat::AutoSi, SecondsFormat::Millis, SecondsFormat::Micros, SecondsFormat::Secs] {
                    proptest::prop_assert_eq!(utc(&t, format), t.to_rfc3339_opts(format, true));
                }
            }
        }
    }
}
