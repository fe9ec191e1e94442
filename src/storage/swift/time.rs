//! Swift's three ways of writing an object's time, all turned into nanoseconds since the epoch.
//!
//! - A listing's `last_modified` (`2026-11-23T23:59:15.978710`: UTC without a zone, six
//!   fractional digits) and the `X-Timestamp` header of HEAD and GET (`1795478355.97871`, five
//!   decimals, possibly with an `_offset` suffix) come from the same internal timestamp, which
//!   Swift keeps in units of 10 µs. Parsed exactly (no floating point) they give the same
//!   number, so an object's `modified_ns` from a listing equals the one read after a `put`.
//! - `Last-Modified` (an HTTP date) is that timestamp rounded **up** to the next whole second;
//!   it is never compared with the other two. [`round_up_to_second`] is the rule, for anything
//!   that must relate the two.

/// Days from 1970-01-01 to the given date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a run of ASCII digits as a number (None when empty or not digits).
fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 18 {
        return None;
    }
    s.parse().ok()
}

/// A decimal fraction (the digits after the point) as nanoseconds, truncated past 9 digits.
fn fraction_ns(frac: &str) -> Option<i64> {
    if frac.is_empty() {
        return Some(0);
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut padded: String = frac.chars().take(9).collect();
    while padded.len() < 9 {
        padded.push('0');
    }
    padded.parse().ok()
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction][Z|+00:00]`, UTC when no zone is given (a listing's
/// `last_modified`, Keystone's `expires_at`).
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s
        .strip_suffix(['Z', 'z'])
        .or_else(|| s.strip_suffix("+00:00"))
        .unwrap_or(s);
    let (date, time) = s.split_once(['T', ' '])?;
    let mut dp = date.splitn(3, '-');
    let (y, mo, d) = (dp.next()?, dp.next()?, dp.next()?);
    let (y, mo, d) = (digits(y)?, digits(mo)?, digits(d)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut tp = hms.splitn(3, ':');
    let (h, mi, sec) = (tp.next()?, tp.next()?, tp.next()?);
    let (h, mi, sec) = (digits(h)?, digits(mi)?, digits(sec)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    Some(secs * 1_000_000_000 + fraction_ns(frac)?)
}

/// `X-Timestamp`: seconds with a decimal fraction, maybe followed by `_` and an offset.
pub fn parse_x_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.split_once('_').map(|(t, _)| t).unwrap_or(s);
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    Some(digits(secs)? * 1_000_000_000 + fraction_ns(frac)?)
}

/// An HTTP date (`Tue, 24 Nov 2026 00:12:21 GMT`, RFC 7231 IMF-fixdate).
pub fn parse_http_date(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let s = s.trim();
    let rest = s.split_once(", ").map(|(_, r)| r).unwrap_or(s);
    let mut parts = rest.split_whitespace();
    let d = digits(parts.next()?)?;
    let mon = parts.next()?;
    let mo = MONTHS.iter().position(|m| *m == mon)? as u32 + 1;
    let y = digits(parts.next()?)?;
    let time = parts.next()?;
    if parts.next() != Some("GMT") {
        return None;
    }
    parse_iso8601(&format!("{y:04}-{mo:02}-{d:02}T{time}"))
}

/// The `Last-Modified` second Swift shows for a timestamp: rounded up to a whole second.
pub fn round_up_to_second(ns: i64) -> i64 {
    let s = ns.div_euclid(1_000_000_000);
    let rest = ns.rem_euclid(1_000_000_000);
    (s + i64::from(rest != 0)) * 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_and_x_timestamp_agree() {
        // The same object as the real Swift 2.30 showed it in a listing and on HEAD.
        let listing = parse_iso8601("2026-11-24T00:12:20.943350").unwrap();
        let head = parse_x_timestamp("1795479140.94335").unwrap();
        assert_eq!(listing, head);
        assert_eq!(listing, 1_795_479_140_943_350_000);
        let last_modified = parse_http_date("Tue, 24 Nov 2026 00:12:21 GMT").unwrap();
        assert_eq!(round_up_to_second(listing), last_modified);
        // A timestamp on a whole second is not rounded.
        let whole = parse_iso8601("2026-11-24T00:12:20.000000").unwrap();
        assert_eq!(whole, parse_x_timestamp("1795479140.00000").unwrap());
        assert_eq!(round_up_to_second(whole), whole);
    }

    #[test]
    fn variants() {
        assert_eq!(parse_iso8601("1970-01-01T00:00:00"), Some(0));
        assert_eq!(parse_iso8601("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(
            parse_iso8601("2000-02-29T12:00:00.5+00:00"),
            Some(951_825_600_500_000_000)
        );
        assert_eq!(
            parse_x_timestamp("1795479140.94335_0000000000000001"),
            Some(1_795_479_140_943_350_000)
        );
        assert_eq!(parse_x_timestamp("12"), Some(12_000_000_000));
        for bad in ["", "x", "2026-13-01T00:00:00", "2026-01-01", "1.2.3"] {
            assert!(
                parse_iso8601(bad).is_none() || bad == "1.2.3",
                "{bad:?} accepted"
            );
        }
        assert!(parse_x_timestamp("1.2.3").is_none());
        assert!(parse_x_timestamp("abc").is_none());
        assert!(parse_http_date("Tue, 24 Nov 2026 00:12:21 UTC").is_none());
    }
}
