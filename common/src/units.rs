//! Human-friendly units for flags and environment variables: durations such as
//! `500ms`, `5s`, `1m30s` and byte sizes such as `64KiB` or `10MB`.
//!
//! Both parsers are used as clap `value_parser`s, so their error strings end up
//! verbatim in the one-line error a user sees.

use std::time::Duration;

/// Parses a duration: a sequence of `<number><unit>` parts (`1m30s`, `1.5s`,
/// `250ms`), units `ns`, `us`, `ms`, `s`, `m`, `h`, `d`. A bare number is
/// seconds, as for `sleep 5`, which is what the lab's loops used.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration (expected e.g. 500ms, 5s, 1m)".to_owned());
    }
    if let Ok(seconds) = trimmed.parse::<f64>() {
        return seconds_to_duration(seconds, text);
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(format!(
                "invalid duration {text:?} (expected e.g. 500ms, 5s, 1m)"
            ));
        }
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after_unit) = after.split_at(unit_len);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid number {number:?} in duration {text:?}"))?;
        let unit_seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" => 86400.0,
            "" => {
                return Err(format!(
                    "missing unit in duration {text:?} (use ms, s, m or h)"
                ));
            }
            other => {
                return Err(format!(
                    "unknown unit {other:?} in duration {text:?} (use ms, s, m or h)"
                ));
            }
        };
        total += seconds_to_duration(value * unit_seconds, text)?;
        rest = after_unit;
    }
    Ok(total)
}

/// [`parse_duration`] for settings where 0 makes no sense (a poll interval
/// of 0 is a busy loop, a timeout of 0 fails every try at once).
pub fn parse_nonzero_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        duration if duration.is_zero() => Err(format!(
            "duration {text:?} must be more than 0 (expected e.g. 500ms, 5s, 1m)"
        )),
        duration => Ok(duration),
    }
}

fn seconds_to_duration(seconds: f64, text: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("duration {text:?} is negative or too large"))
}

/// Parses a byte size: a number with an optional unit, `B`, `K`/`KB` (1000),
/// `KiB` (1024), `M`/`MB`, `MiB`, `G`/`GB`, `GiB`. Case-insensitive.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let number_len = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_len);
    if number.is_empty() {
        return Err(format!(
            "invalid size {text:?} (expected e.g. 4096, 64KiB, 10MB)"
        ));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid number in size {text:?}"))?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" | "ki" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" | "mi" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" | "gi" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown unit {other:?} in size {text:?}")),
    };
    let bytes = value * multiplier;
    if !(0.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("size {text:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// [`parse_bytes`] for bounds where 0 makes no sense (a line bound of 0
/// would cut every line to nothing).
pub fn parse_nonzero_bytes(text: &str) -> Result<u64, String> {
    match parse_bytes(text)? {
        0 => Err(format!(
            "size {text:?} must be at least 1 byte (expected e.g. 4096, 64KiB, 10MB)"
        )),
        bytes => Ok(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_the_forms_users_type() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bare_number_is_seconds_like_sleep() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn bad_durations_say_why() {
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(
            parse_duration("ms")
                .unwrap_err()
                .contains("invalid duration")
        );
        assert!(parse_duration("-1").unwrap_err().contains("negative"));
        assert!(parse_duration("5s3").unwrap_err().contains("missing unit"));
    }

    #[test]
    fn sizes_with_decimal_and_binary_units() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_bytes("64k"), Ok(64000));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5KiB"), Ok(1536));
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
    }

    #[test]
    fn zero_is_refused_where_it_makes_no_sense() {
        assert!(
            parse_nonzero_duration("0")
                .unwrap_err()
                .contains("must be more than 0")
        );
        assert!(parse_nonzero_duration("0ms").is_err());
        assert_eq!(parse_nonzero_duration("1ms"), Ok(Duration::from_millis(1)));
        assert!(
            parse_nonzero_bytes("0KiB")
                .unwrap_err()
                .contains("must be at least 1 byte")
        );
        assert_eq!(parse_nonzero_bytes("1"), Ok(1));
    }
}
