//! RFC 3339 timestamps as TOCs carry them: `2020-01-02T03:04:05Z`, with optional fractional
//! seconds (containers/storage writes nanoseconds) and an optional numeric UTC offset.

/// Seconds since the Unix epoch and nanoseconds, or `None` when the text is not RFC 3339.
/// The reference treats an unparsable time as zero; callers do the same.
pub fn parse_rfc3339(s: &[u8]) -> Option<(i64, u32)> {
    fn num(s: &[u8], at: usize, len: usize) -> Option<i64> {
        let digits = s.get(at..at + len)?;
        let mut v = 0i64;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(d - b'0');
        }
        Some(v)
    }
    let year = num(s, 0, 4)?;
    let month = num(s, 5, 2)?;
    let day = num(s, 8, 2)?;
    let hour = num(s, 11, 2)?;
    let minute = num(s, 14, 2)?;
    let second = num(s, 17, 2)?;
    if s.get(4) != Some(&b'-') || s.get(7) != Some(&b'-') || s.get(13) != Some(&b':') || s.get(16) != Some(&b':') {
        return None;
    }
    if !matches!(s.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut pos = 19;
    let mut nanos: u32 = 0;
    if s.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while let Some(&digit) = s.get(pos).filter(|b| b.is_ascii_digit()) {
            if pos - start < 9 {
                nanos = nanos * 10 + u32::from(digit - b'0');
            }
            pos += 1;
        }
        if pos == start {
            return None;
        }
        for _ in (pos - start).min(9)..9 {
            nanos *= 10;
        }
    }
    let offset = match s.get(pos) {
        Some(b'Z' | b'z') if s.len() == pos + 1 => 0,
        Some(&sign @ (b'+' | b'-')) if s.len() == pos + 6 && s.get(pos + 3) == Some(&b':') => {
            let secs = num(s, pos + 1, 2)? * 3600 + num(s, pos + 4, 2)? * 60;
            if sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86400 + hour * 3600 + minute * 60 + second - offset;
    Some((secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_tocs_use() {
        assert_eq!(parse_rfc3339(b"1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(parse_rfc3339(b"2020-01-02T03:04:05Z"), Some((1_577_934_245, 0)));
        assert_eq!(parse_rfc3339(b"2020-01-02T03:04:05.123456789Z"), Some((1_577_934_245, 123_456_789)));
        assert_eq!(parse_rfc3339(b"2020-01-02T03:04:05.5+01:00"), Some((1_577_934_245 - 3600, 500_000_000)));
        assert_eq!(parse_rfc3339(b"2020-01-02T03:04:05-00:30"), Some((1_577_934_245 + 1800, 0)));
        assert_eq!(parse_rfc3339(b"1969-12-31T23:59:59Z"), Some((-1, 0)));
        assert_eq!(parse_rfc3339(b"0001-01-01T00:00:00Z"), Some((-62_135_596_800, 0)));
        for bad in [&b""[..], b"2020-01-02", b"2020-13-02T03:04:05Z", b"2020-01-02T03:04:05", b"2020-01-02T03:04:05.Z"]
        {
            assert_eq!(parse_rfc3339(bad), None);
        }
    }
}
