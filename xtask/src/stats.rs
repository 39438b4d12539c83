//! Figures from measurements: percentiles of samples, and sizes and
//! durations as people and tools write them (`100MB`, `1GiB`, podman's
//! `2.65MB` and `1m2.5s`). One copy of each, used by every benchmark.

/// Nearest-rank percentile `p` (0 to 1) of `sorted` (ascending); `None`
/// when there are no samples, so each caller says what an empty set shows.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// A size in bytes: a number (fractions allowed) and an optional unit,
/// decimal (`kB`, `MB`, `GB`, as podman prints them) or binary (`KiB`,
/// `MiB`, `GiB`), case-insensitive, the `B` optional (`4096`, `100M`).
pub fn parse_size(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let number: f64 = text[..split].parse().ok()?;
    let factor = match text[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * factor)
}

/// A Go duration as podman prints it (`1m2.5s`, `850.2ms`, `12µs`) in seconds.
pub fn go_duration_s(text: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = text.trim();
    if rest == "0s" || rest == "0" {
        return Some(0.0);
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "µs" | "us" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_none_without_samples() {
        let samples = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&samples, 0.5), Some(5));
        assert_eq!(percentile(&samples, 0.99), Some(10));
        assert_eq!(percentile(&samples, 0.0), Some(1));
        assert_eq!(percentile::<f64>(&[], 0.5), None);
    }

    #[test]
    fn sizes_parse_in_decimal_and_binary_units() {
        assert_eq!(parse_size("385kB"), Some(385e3));
        assert!(parse_size("134.2MB").is_some_and(|b| (b - 134.2e6).abs() < 1.0));
        assert_eq!(parse_size("2.65MB"), Some(2_650_000.0));
        assert_eq!(parse_size("0B"), Some(0.0));
        assert_eq!(parse_size("100MB"), Some(1e8));
        assert_eq!(parse_size("1GiB"), Some((1u64 << 30) as f64));
        assert_eq!(parse_size("4096"), Some(4096.0));
        assert_eq!(parse_size("n/a"), None);
        assert_eq!(parse_size("12 parsecs"), None);
    }

    #[test]
    fn podman_durations_parse() {
        assert_eq!(go_duration_s("1m2.5s"), Some(62.5));
        assert!((go_duration_s("850.5ms").unwrap() - 0.8505).abs() < 1e-9);
        assert_eq!(go_duration_s("0s"), Some(0.0));
        assert_eq!(go_duration_s("3 fortnights"), None);
    }
}
