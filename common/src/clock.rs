//! The timestamps the binaries print.
//!
//! The lab's loops print `$(date)`, which in a busybox container without a
//! time zone database is `Wed Nov 25 14:01:13 UTC 2026` (day of month padded
//! with a space, like GNU `date`). [`TimeFormat::Date`] reproduces that layout
//! exactly so the lab's output does not change; RFC 3339 is offered for
//! machines.

use jiff::{Timestamp, Zoned, tz::TimeZone};

/// How a timestamp is rendered in a line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeFormat {
    /// `Wed Nov 25 14:01:13 UTC 2026`, the output of `date` in the lab's containers.
    #[default]
    Date,
    /// `2026-11-25T14:01:13.123Z`, RFC 3339 in UTC with milliseconds.
    Rfc3339,
    /// Seconds since the Unix epoch with milliseconds: `1795615273.123`.
    Unix,
}

/// The time zone lines are stamped in: the process's local zone (`TZ`, then
/// `/etc/localtime`), which in a scratch image is UTC, as for busybox `date`.
pub fn local_zone() -> TimeZone {
    TimeZone::try_system().unwrap_or(TimeZone::UTC)
}

/// Renders `now` in `format`, in `zone` for the human-readable layout.
pub fn format_time(now: Timestamp, zone: &TimeZone, format: TimeFormat) -> String {
    match format {
        TimeFormat::Date => date_layout(&now.to_zoned(zone.clone())),
        TimeFormat::Rfc3339 => rfc3339_utc(now),
        TimeFormat::Unix => {
            let millis = now.as_millisecond();
            format!("{}.{:03}", millis.div_euclid(1000), millis.rem_euclid(1000))
        }
    }
}

/// `Wed Nov 25 14:01:13 UTC 2026`: `date`'s default layout (`%a %b %e %H:%M:%S %Z %Y`).
pub fn date_layout(zoned: &Zoned) -> String {
    zoned.strftime("%a %b %e %H:%M:%S %Z %Y").to_string()
}

/// RFC 3339 in UTC with millisecond precision, the form log pipelines expect.
pub fn rfc3339_utc(now: Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn date_layout_matches_busybox_date_in_utc() {
        let stamp = at("2026-11-25T14:01:13Z");
        assert_eq!(
            format_time(stamp, &TimeZone::UTC, TimeFormat::Date),
            "Wed Nov 25 14:01:13 UTC 2026"
        );
    }

    #[test]
    fn date_layout_pads_single_digit_days_with_a_space() {
        let stamp = at("2026-12-05T09:08:07Z");
        assert_eq!(
            format_time(stamp, &TimeZone::UTC, TimeFormat::Date),
            "Sat Dec  5 09:08:07 UTC 2026"
        );
    }

    #[test]
    fn rfc3339_is_utc_with_milliseconds() {
        let stamp = at("2026-11-25T14:01:13.5+02:00");
        assert_eq!(
            format_time(stamp, &TimeZone::UTC, TimeFormat::Rfc3339),
            "2026-11-25T12:01:13.500Z"
        );
    }

    #[test]
    fn unix_seconds_with_milliseconds() {
        let stamp = at("1970-01-01T00:00:01.25Z");
        assert_eq!(
            format_time(stamp, &TimeZone::UTC, TimeFormat::Unix),
            "1.250"
        );
    }
}
