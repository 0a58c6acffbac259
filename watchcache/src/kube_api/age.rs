//! Ages as the API server's printers word them (apimachinery's `HumanDuration`), from RFC 3339 timestamps.

use std::time::SystemTime;

/// Seconds from `ts` (RFC 3339) to now; None when absent or unparsable.
pub(crate) fn since(ts: Option<&str>, now: SystemTime) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(ts?).ok()?;
    Some(match now.duration_since(t) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    })
}

/// `translateTimestampSince`: `<unknown>` without a timestamp.
pub(crate) fn age(ts: Option<&str>, now: SystemTime) -> String {
    match since(ts, now) {
        Some(s) => human(s),
        None => "<unknown>".into(),
    }
}

/// apimachinery's `duration.HumanDuration`, second-exact.
pub(crate) fn human(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{d}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_durations_as_kubectl_prints_them() {
        for (s, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (50 * 3600, "2d2h"),
            (8 * 86400, "8d"),
            (800 * 86400, "2y70d"),
            (365 * 2 * 86400, "2y"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(human(s), want, "{s}s");
        }
        let now = humantime::parse_rfc3339("2026-01-01T00:10:00Z").unwrap();
        assert_eq!(age(Some("2026-01-01T00:00:00Z"), now), "10m");
        assert_eq!(age(None, now), "<unknown>");
        assert_eq!(age(Some("yesterday"), now), "<unknown>");
    }
}
