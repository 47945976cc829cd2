//! The one wall clock and calendar of the workspace: the current time as Unix milliseconds or
//! seconds, and the `YYYY-MM-DD` dates configuration and admins write (subscription ends).
//!
//! Pure logic takes the time as an argument (the guard engine never reads a clock); everything
//! that does read one reads it here, so a test or a replay can reason about one source.
//!
//! Must never: allocate on the hot path (only `civil_date` formats), or depend on another crate
//! of the workspace.

use std::time::{SystemTime, UNIX_EPOCH};

const DAY_MS: i64 = 86_400_000;

/// Now, Unix milliseconds (0 on a clock set before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Now, Unix seconds (0 on a clock set before 1970).
pub fn now_secs() -> i64 {
    now_ms() / 1000
}

/// The days since 1970-01-01 of a calendar date, if it is one (February 30th is not).
/// Howard Hinnant's days-from-civil algorithm.
pub fn days_from_date(date: &str) -> Option<i64> {
    let mut parts = date.trim().splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !(all_digits(y) && all_digits(m) && all_digits(d)) {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Whether `s` is a calendar date written `YYYY-MM-DD`.
pub fn is_date(s: &str) -> bool {
    days_from_date(s).is_some()
}

/// The first instant after the whole day `date` (an inclusive last day such as a
/// subscription's end), Unix ms.
pub fn end_of_day_ms(date: &str) -> Option<i64> {
    days_from_date(date).map(|days| (days + 1) * DAY_MS)
}

/// The calendar date `(year, month, day)` of a day counted from 1970-01-01 (Howard Hinnant's
/// civil-from-days algorithm).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD` of a Unix time in seconds.
pub fn iso_date(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYYMMDD` of a Unix time in seconds.
pub fn civil_date(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}{m:02}{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked_for_form_and_range() {
        assert!(is_date("2027-12-31"));
        assert!(is_date("2028-02-29"));
        assert!(!is_date("2027-02-29"));
        assert!(!is_date("2027-13-01"));
        assert!(!is_date("2027-04-31"));
        assert!(!is_date("27-12-31"));
        assert!(!is_date("2027-1-31"));
        assert!(!is_date("2027-12-3x"));
        assert!(!is_date("+027-12-31"));
        assert!(!is_date(""));
    }

    #[test]
    fn end_of_day_is_the_next_midnight() {
        assert_eq!(end_of_day_ms("1970-01-01"), Some(DAY_MS));
        // 2027-12-31 is day 21,183; the next midnight is 2028-01-01T00:00Z.
        assert_eq!(end_of_day_ms("2027-12-31"), Some(1_830_297_600_000));
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(civil_date(0), "19700101");
        assert_eq!(civil_date(1_830_297_600 - 1), "20271231");
        assert_eq!(civil_date(951_782_400), "20000229");
    }
}
