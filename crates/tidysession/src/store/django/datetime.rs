//! Times as Django's tables hold them.

use time::OffsetDateTime;

/// The lower bound of a cleanup walk from the start: midnight UTC on 1 January of year 1,
/// before any date Django can write (Python's `datetime.min`).
pub(super) fn earliest() -> OffsetDateTime {
    // Always a valid date; the fallback only keeps this free of a panic path.
    time::Date::from_ordinal_date(1, 1)
        .map_or(OffsetDateTime::UNIX_EPOCH, |d| d.midnight().assume_utc())
}

/// Parses the date-time forms Django and the databases write: `YYYY-MM-DD[T ]HH:MM[:SS[.f…]]`
/// with an optional `Z` or `±HH:MM` / `±HHMM` / `±HH` offset; without one it is UTC (Django
/// keeps UTC in the database when `USE_TZ` is on, its default). `None` for anything else.
pub(crate) fn parse_datetime(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(part).ok()?.parse().ok())?
    };
    if b.len() < 16
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
    {
        return None;
    }
    let year = i32::try_from(num(0, 4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(num(5, 2)?).ok()?).ok()?;
    let day = u8::try_from(num(8, 2)?).ok()?;
    let hour = u8::try_from(num(11, 2)?).ok()?;
    let minute = u8::try_from(num(14, 2)?).ok()?;
    let mut i = 16;
    let mut second = 0u8;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b':') {
        second = u8::try_from(num(i + 1, 2)?).ok()?;
        i += 3;
        if matches!(b.get(i), Some(b'.' | b',')) {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let digits = &s[start..i];
            if digits.is_empty() {
                return None;
            }
            let mut padded: String = digits.chars().take(9).collect();
            while padded.len() < 9 {
                padded.push('0');
            }
            nanos = padded.parse().ok()?;
        }
    }
    let offset = match &s[i..] {
        "" | "Z" | "z" => time::UtcOffset::UTC,
        rest => {
            let sign: i8 = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = rest[1..].chars().filter(|c| *c != ':').collect();
            if !(digits.len() == 2 || digits.len() == 4)
                || !digits.bytes().all(|c| c.is_ascii_digit())
            {
                return None;
            }
            let h: i8 = digits[..2].parse().ok()?;
            let m: i8 = if digits.len() == 4 {
                digits[2..].parse().ok()?
            } else {
                0
            };
            time::UtcOffset::from_hms(sign * h, sign * m, 0).ok()?
        }
    };
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let time = time::Time::from_hms_nano(hour, minute, second, nanos).ok()?;
    Some(time::PrimitiveDateTime::new(date, time).assume_offset(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_in_the_forms_django_and_databases_write() {
        let t = |s| parse_datetime(s).map(|t| t.unix_timestamp_nanos());
        let base = 1_700_000_000i128 * 1_000_000_000;
        assert_eq!(t("2023-11-14 22:13:20"), Some(base));
        assert_eq!(t("2023-11-14T22:13:20Z"), Some(base));
        assert_eq!(t("2023-11-14T22:13:20+00:00"), Some(base));
        assert_eq!(t("2023-11-14T23:13:20+01:00"), Some(base));
        assert_eq!(t("2023-11-14 22:13:20.5"), Some(base + 500_000_000));
        assert_eq!(t("2023-11-14 22:13:20.123456"), Some(base + 123_456_000));
        assert_eq!(t("2023-11-14T22:13"), Some(base - 20_000_000_000));
        for bad in [
            "",
            "2023",
            "2023-11-14",
            "2023-13-14 22:13:20",
            "2023-11-14 22:13:20.",
            "2023-11-14 22:13:20+1",
            "2023-11-14x22:13:20",
            "２023-11-14 22:13:20",
            "2023-11-14 22:13:20 junk",
            "2023-11-14 25:13:20",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }
}
