//! RFC 3339 timestamps in UTC, written the way Go's `time.RFC3339Nano` writes them (trailing
//! zeros of the fraction dropped).

use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats nanoseconds since the epoch; `with_fraction=false` rounds to whole seconds.
pub fn rfc3339(ns: i64, with_fraction: bool) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let (secs, nanos) = if with_fraction {
        (secs, nanos)
    } else {
        (secs + i64::from(nanos >= 500_000_000), 0)
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(rfc3339(0, true), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_777_629_598_123_456_789, true),
            "2026-05-01T09:59:58.123456789Z"
        );
        assert_eq!(
            rfc3339(1_777_629_598_120_000_000, true),
            "2026-05-01T09:59:58.12Z"
        );
        assert_eq!(
            rfc3339(1_777_629_598_600_000_000, false),
            "2026-05-01T09:59:59Z"
        );
        assert_eq!(
            rfc3339(951_782_400_000_000_000, true),
            "2000-02-29T00:00:00Z"
        );
    }
}
