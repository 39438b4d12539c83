//! Timestamps in log lines: reading the layouts the formats use and writing
//! them back as RFC 3339 in UTC.
//!
//! Hand-written on bytes rather than through a strftime-style parser: the
//! layouts are fixed, and the adapter converts up to a million lines a second
//! on one core. Every date is validated (month lengths, leap years), then
//! shifted by its UTC offset with plain day arithmetic, so an offset that
//! crosses midnight, a month or a year lands on the right UTC day.
//!
//! Output uses as many fractional digits as the input needs, in groups of 3
//! (none, milliseconds, microseconds, nanoseconds), like Vector's encoders.

/// A calendar date and time as written in a line, before its offset applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
}

pub const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// The month number (1-12) of an English three-letter abbreviation.
pub fn month_number(name: &[u8]) -> Option<u32> {
    MONTHS
        .iter()
        .position(|month| month.eq_ignore_ascii_case(name))
        .map(|index| index as u32 + 1)
}

pub fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl Civil {
    /// Checks the fields form a real date and time (a leap second `:60` is
    /// accepted and lands on the next second, as RFC 5424 allows it).
    pub fn validate(&self) -> Result<(), &'static str> {
        if !(1..=12).contains(&self.month) {
            return Err("month out of range");
        }
        if self.day == 0 || self.day > days_in_month(self.year, self.month) {
            return Err("day out of range for the month");
        }
        if self.hour > 23 || self.minute > 59 || self.second > 60 {
            return Err("time of day out of range");
        }
        if self.nanos >= 1_000_000_000 {
            return Err("fraction out of range");
        }
        Ok(())
    }

    /// Appends this time, shifted by `offset_seconds` east of UTC, as
    /// RFC 3339 UTC (`2026-11-25T14:01:13.5Z` is written `...13.500Z`).
    pub fn write_utc(&self, offset_seconds: i32, out: &mut String) -> Result<(), &'static str> {
        self.validate()?;
        let seconds = days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(offset_seconds);
        let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
        if !(0..=9999).contains(&year) {
            return Err("year out of range");
        }
        let second_of_day = seconds.rem_euclid(86_400) as u32;
        let mut digits = [0u8; 20];
        let fixed = [
            (year as u32 / 100, b'\0'),
            (year as u32 % 100, b'-'),
            (month, b'-'),
            (day, b'T'),
            (second_of_day / 3600, b':'),
            (second_of_day / 60 % 60, b':'),
            (second_of_day % 60, b'\0'),
        ];
        let mut length = 0;
        for (value, separator) in fixed {
            digits[length] = b'0' + (value / 10) as u8;
            digits[length + 1] = b'0' + (value % 10) as u8;
            length += 2;
            if separator != b'\0' {
                digits[length] = separator;
                length += 1;
            }
        }
        // Only ASCII digits and separators were written.
        out.push_str(std::str::from_utf8(&digits[..length]).unwrap_or_default());
        let (value, width) = match self.nanos {
            0 => (0, 0),
            nanos if nanos % 1_000_000 == 0 => (nanos / 1_000_000, 3),
            nanos if nanos % 1_000 == 0 => (nanos / 1_000, 6),
            nanos => (nanos, 9),
        };
        if width > 0 {
            let mut fraction = [b'.'; 10];
            let mut rest = value;
            for slot in fraction[1..=width].iter_mut().rev() {
                *slot = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            out.push_str(std::str::from_utf8(&fraction[..=width]).unwrap_or_default());
        }
        out.push('Z');
        Ok(())
    }

    /// [`Civil::write_utc`] into a new string.
    pub fn to_utc(&self, offset_seconds: i32) -> Result<String, &'static str> {
        let mut out = String::with_capacity(32);
        self.write_utc(offset_seconds, &mut out)?;
        Ok(out)
    }
}

/// Reads exactly `count` ASCII digits at `*at`, advancing past them.
pub fn digits(bytes: &[u8], at: &mut usize, count: usize) -> Option<u32> {
    let slice = bytes.get(*at..*at + count)?;
    let mut value = 0u32;
    for &byte in slice {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(byte - b'0');
    }
    *at += count;
    Some(value)
}

/// Expects `byte` at `*at`, advancing past it.
pub fn expect(bytes: &[u8], at: &mut usize, byte: u8) -> Option<()> {
    (bytes.get(*at) == Some(&byte)).then(|| *at += 1)
}

/// Reads `.fraction` (1 to 9 digits; more are read and ignored) if present,
/// as nanoseconds.
pub fn fraction(bytes: &[u8], at: &mut usize) -> u32 {
    if !matches!(bytes.get(*at), Some(b'.') | Some(b',')) {
        return 0;
    }
    let start = *at + 1;
    let mut end = start;
    let mut nanos = 0u32;
    while let Some(&byte) = bytes.get(end) {
        if !byte.is_ascii_digit() {
            break;
        }
        if end - start < 9 {
            nanos = nanos * 10 + u32::from(byte - b'0');
        }
        end += 1;
    }
    if end == start {
        return 0;
    }
    for _ in (end - start)..9 {
        nanos *= 10;
    }
    *at = end;
    nanos
}

/// Reads `hh:mm:ss` at `*at`.
pub fn clock(bytes: &[u8], at: &mut usize) -> Option<(u32, u32, u32)> {
    let hour = digits(bytes, at, 2)?;
    expect(bytes, at, b':')?;
    let minute = digits(bytes, at, 2)?;
    expect(bytes, at, b':')?;
    let second = digits(bytes, at, 2)?;
    Some((hour, minute, second))
}

/// Reads an offset `Z`, `+hh:mm`, `+hhmm` or `+hh`, in seconds east of UTC.
pub fn offset(bytes: &[u8], at: &mut usize) -> Option<i32> {
    match bytes.get(*at)? {
        b'Z' | b'z' => {
            *at += 1;
            Some(0)
        }
        sign @ (b'+' | b'-') => {
            let negative = *sign == b'-';
            *at += 1;
            let hours = digits(bytes, at, 2)?;
            if bytes.get(*at) == Some(&b':') {
                *at += 1;
            }
            let minutes = digits(bytes, at, 2).unwrap_or(0);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = (hours * 3600 + minutes * 60) as i32;
            Some(if negative { -seconds } else { seconds })
        }
        _ => None,
    }
}

/// Reads an RFC 3339 timestamp (`2026-11-25T14:01:13.123+01:00`; a space
/// for the `T` is accepted) at `*at`: the civil time and its offset.
pub fn rfc3339(bytes: &[u8], at: &mut usize) -> Option<(Civil, i32)> {
    let year = digits(bytes, at, 4)? as i32;
    expect(bytes, at, b'-')?;
    let month = digits(bytes, at, 2)?;
    expect(bytes, at, b'-')?;
    let day = digits(bytes, at, 2)?;
    match bytes.get(*at)? {
        b'T' | b't' | b' ' => *at += 1,
        _ => return None,
    }
    let (hour, minute, second) = clock(bytes, at)?;
    let nanos = fraction(bytes, at);
    let offset = offset(bytes, at)?;
    Some((
        Civil {
            year,
            month,
            day,
            hour,
            minute,
            second,
            nanos,
        },
        offset,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn civil(text: &str) -> (Civil, i32) {
        let mut at = 0;
        let parsed = rfc3339(text.as_bytes(), &mut at).unwrap();
        assert_eq!(at, text.len(), "{text}");
        parsed
    }

    fn utc(text: &str) -> Result<String, &'static str> {
        let (civil, offset) = civil(text);
        civil.to_utc(offset)
    }

    #[test]
    fn offsets_are_applied_across_midnight_and_year_boundaries() {
        for (input, expected) in [
            ("2026-11-25T14:01:13Z", "2026-11-25T14:01:13Z"),
            ("2026-11-25T14:01:13+01:00", "2026-11-25T13:01:13Z"),
            ("2026-01-01T00:30:00+02:00", "2025-12-31T22:30:00Z"),
            ("2025-12-31T22:30:00-05:00", "2026-01-01T03:30:00Z"),
            ("2024-03-01T01:00:00+05:30", "2024-02-29T19:30:00Z"),
            ("2023-03-01T01:00:00+05:30", "2023-02-28T19:30:00Z"),
            ("2026-11-25T14:01:13.5Z", "2026-11-25T14:01:13.500Z"),
            ("2026-11-25T14:01:13.123456Z", "2026-11-25T14:01:13.123456Z"),
            (
                "2026-11-25T14:01:13.000000001Z",
                "2026-11-25T14:01:13.000000001Z",
            ),
            ("2026-11-25 14:01:13-0130", "2026-11-25T15:31:13Z"),
            ("2016-12-31T23:59:60Z", "2017-01-01T00:00:00Z"),
        ] {
            assert_eq!(utc(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn impossible_dates_are_rejected() {
        assert!(utc("2023-02-29T00:00:00Z").is_err());
        assert!(utc("2024-02-29T00:00:00Z").is_ok());
        assert!(utc("1900-02-29T00:00:00Z").is_err());
        assert!(utc("2000-02-29T00:00:00Z").is_ok());
        assert!(utc("2026-04-31T00:00:00Z").is_err());
        assert!(utc("2026-13-01T00:00:00Z").is_err());
        assert!(utc("2026-01-01T24:00:00Z").is_err());
    }

    #[test]
    fn day_arithmetic_round_trips_over_four_centuries() {
        for days in (-800_000..800_000).step_by(97) {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year as i32, month, day), days);
        }
    }
}
