//! Go's duration syntax, which Litestream configs and listings use.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration in Go's syntax (`1s`, `500ms`, `1h30m`, `1.5h`), as Litestream configs spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "0" {
            return Ok(Self(Duration::ZERO));
        }
        if s.is_empty() {
            return Err("empty duration".into());
        }
        let mut total = 0f64;
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            if num_len == 0 {
                return Err(format!("invalid duration {s:?}: expected a number at {rest:?}"));
            }
            let value: f64 = rest[..num_len].parse().map_err(|_| format!("invalid duration {s:?}"))?;
            rest = &rest[num_len..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
            let seconds = match &rest[..unit_len] {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "" => {
                    return Err(format!("invalid duration {s:?}: missing unit (ns, us, ms, s, m, h)"));
                }
                u => {
                    return Err(format!("invalid duration {s:?}: unknown unit {u:?} (ns, us, ms, s, m, h)"));
                }
            };
            total += value * seconds;
            rest = &rest[unit_len..];
        }
        Ok(Self(Duration::from_secs_f64(total)))
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GoDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `d` the way Go's `time.Duration.String` prints it (`1h2m5s`, `1.5s`, `250ms`, `0s`), after Litestream's
/// truncation for listings: whole seconds above 10s, tenths above 1s, milliseconds above 1ms.
pub fn go_format(d: Duration, negative: bool) -> String {
    let nanos = d.as_nanos();
    let truncated = if nanos > 10_000_000_000 {
        nanos - nanos % 1_000_000_000
    } else if nanos > 1_000_000_000 {
        nanos - nanos % 100_000_000
    } else if nanos > 1_000_000 {
        nanos - nanos % 1_000_000
    } else {
        nanos - nanos % 1_000
    };
    let sign = if negative && truncated > 0 { "-" } else { "" };
    if truncated == 0 {
        return "0s".into();
    }
    let frac = |value: u128, unit: u128, suffix: &str| {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            format!("{whole}{suffix}")
        } else {
            let digits = unit.to_string().len() - 1;
            let s = format!("{rest:0digits$}");
            format!("{whole}.{}{suffix}", s.trim_end_matches('0'))
        }
    };
    if truncated < 1_000 {
        return format!("{sign}{truncated}ns");
    }
    if truncated < 1_000_000 {
        return format!("{sign}{}", frac(truncated, 1_000, "µs"));
    }
    if truncated < 1_000_000_000 {
        return format!("{sign}{}", frac(truncated, 1_000_000, "ms"));
    }
    let secs = truncated / 1_000_000_000;
    let sub = truncated % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let seconds = frac(s * 1_000_000_000 + sub, 1_000_000_000, "s");
    match (h, m) {
        (0, 0) => format!("{sign}{seconds}"),
        (0, m) => format!("{sign}{m}m{seconds}"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(GoDuration::parse("1s"), Ok(GoDuration(Duration::from_secs(1))));
        assert_eq!(GoDuration::parse("1h30m"), Ok(GoDuration(Duration::from_secs(5400))));
        assert_eq!(GoDuration::parse("500ms"), Ok(GoDuration(Duration::from_millis(500))));
        assert_eq!(GoDuration::parse("1.5h"), Ok(GoDuration(Duration::from_secs(5400))));
        assert_eq!(GoDuration::parse("0"), Ok(GoDuration(Duration::ZERO)));
        assert!(GoDuration::parse("10").expect_err("no unit").contains("missing unit"));
        assert!(GoDuration::parse("3 days").is_err());
        assert!(GoDuration::parse("1d").expect_err("days").contains("unknown unit"));
    }

    #[test]
    fn formats_like_go() {
        let f = |ms: u64| go_format(Duration::from_millis(ms), false);
        assert_eq!(f(3_725_400), "1h2m5s");
        assert_eq!(f(65_000), "1m5s");
        assert_eq!(f(12_345), "12s");
        assert_eq!(f(1_540), "1.5s");
        assert_eq!(f(250), "250ms");
        assert_eq!(f(0), "0s");
        assert_eq!(f(7_200_000), "2h0m0s");
        assert_eq!(go_format(Duration::from_secs(5), true), "-5s");
    }
}
