//! Which status codes count as success (`--expect-status`).
//!
//! The default, 200-399, is what a Kubernetes httpGet probe accepts. A set is
//! written as a comma-separated list of codes (`204`), ranges (`200-299`) and
//! classes (`2xx`); every code must be between 100 and 599.

use std::fmt;

/// The status codes that count as success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSet {
    /// Inclusive ranges, in the order written.
    ranges: Vec<(u16, u16)>,
}

/// Why a status set cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid --expect-status {text:?}: {cause} (expected e.g. 200-399, 200,204, 2xx)")]
pub struct StatusSetError {
    text: String,
    cause: String,
}

impl Default for StatusSet {
    fn default() -> Self {
        Self {
            ranges: vec![(200, 399)],
        }
    }
}

impl StatusSet {
    pub fn parse(text: &str) -> Result<Self, StatusSetError> {
        let bad = |cause: String| StatusSetError {
            text: text.to_owned(),
            cause,
        };
        let code = |part: &str| -> Result<u16, StatusSetError> {
            let value: u16 = part
                .trim()
                .parse()
                .map_err(|_| bad(format!("{:?} is not a status code", part.trim())))?;
            if (100..=599).contains(&value) {
                Ok(value)
            } else {
                Err(bad(format!("{value} is not between 100 and 599")))
            }
        };
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(bad("empty entry".to_owned()));
            }
            let range = if let Some((low, high)) = part.split_once('-') {
                let (low, high) = (code(low)?, code(high)?);
                if low > high {
                    return Err(bad(format!("range {part} runs backwards")));
                }
                (low, high)
            } else if let Some(class) = part.strip_suffix("xx").or_else(|| part.strip_suffix("XX"))
            {
                let hundreds = code(&format!("{class}00"))?;
                (hundreds, hundreds + 99)
            } else {
                let single = code(part)?;
                (single, single)
            };
            ranges.push(range);
        }
        Ok(Self { ranges })
    }

    pub fn contains(&self, status: u16) -> bool {
        self.ranges
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&status))
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (low, high)) in self.ranges.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            if low == high {
                write!(f, "{low}")?;
            } else {
                write!(f, "{low}-{high}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_what_kubelet_accepts() {
        let set = StatusSet::default();
        assert!(set.contains(200) && set.contains(302) && set.contains(399));
        assert!(!set.contains(199) && !set.contains(400) && !set.contains(503));
        assert_eq!(StatusSet::parse("200-399").unwrap(), set);
    }

    #[test]
    fn lists_ranges_and_classes() {
        let set = StatusSet::parse("204, 300-302,5xx").unwrap();
        assert!(set.contains(204) && set.contains(301) && set.contains(503));
        assert!(!set.contains(200) && !set.contains(303) && !set.contains(404));
        assert_eq!(set.to_string(), "204,300-302,500-599");
    }

    #[test]
    fn bad_sets_say_why() {
        let message = |text: &str| StatusSet::parse(text).unwrap_err().to_string();
        assert!(message("abc").contains("\"abc\" is not a status code"));
        assert!(message("200-").contains("is not a status code"));
        assert!(message("99").contains("not between 100 and 599"));
        assert!(message("399-200").contains("runs backwards"));
        assert!(message("200,,300").contains("empty entry"));
        assert!(message("7xx").contains("not between 100 and 599"));
    }
}
