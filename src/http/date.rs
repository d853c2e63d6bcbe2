//! HTTP dates: civil UTC time from Unix time, IMF-fixdate formatting, and a once-a-second cache.

use std::time::{SystemTime, UNIX_EPOCH};

/// 9999-12-31T23:59:59Z, the last instant IMF-fixdate's four-digit year can express.
const LAST_FIXDATE: u64 = 253_402_300_799;

const WEEKDAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Civil UTC time for a Unix time: (year, month 1-12, day 1-31, hour, minute, second,
/// weekday 0=Sunday). Valid for every u64, with years far beyond 9999 for huge inputs.
pub fn civil_from_unix(unix_secs: u64) -> (i64, u32, u32, u32, u32, u32, u32) {
    // u64::MAX / 86400 is about 2.1e14, so the day count always fits an i64.
    let days = i64::try_from(unix_secs / 86_400).unwrap_or(i64::MAX / 2);
    let secs_of_day = (unix_secs % 86_400) as u32;
    let (hour, minute, second) = (
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60,
    );
    // 1970-01-01 was a Thursday.
    let weekday = ((days + 4) % 7) as u32;

    // Howard Hinnant's civil_from_days: eras of 400 years starting on March 1st, so the leap
    // day falls at the end of each computed year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, hour, minute, second, weekday)
}

/// IMF-fixdate, e.g. `b"Sun, 06 Nov 1994 08:49:37 GMT"`. Times after year 9999 are clamped to
/// its last second, since the format has no room for a fifth year digit.
pub fn http_date(unix_secs: u64) -> [u8; 29] {
    let (year, month, day, hour, minute, second, weekday) =
        civil_from_unix(unix_secs.min(LAST_FIXDATE));
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    let wd = WEEKDAYS.get(weekday as usize).copied().unwrap_or(b"Thu");
    let mon = MONTHS
        .get((month as usize).wrapping_sub(1))
        .copied()
        .unwrap_or(b"Jan");
    out[0..3].copy_from_slice(wd);
    two_digits(&mut out[5..7], day);
    out[8..11].copy_from_slice(mon);
    let year = u32::try_from(year).unwrap_or(1970);
    two_digits(&mut out[12..14], year / 100);
    two_digits(&mut out[14..16], year % 100);
    two_digits(&mut out[17..19], hour);
    two_digits(&mut out[20..22], minute);
    two_digits(&mut out[23..25], second);
    out
}

fn two_digits(slot: &mut [u8], n: u32) {
    // n < 100 for every caller; the modulo keeps a bad value from producing a non-digit.
    let n = n % 100;
    if let [tens, ones] = slot {
        *tens = b'0' + (n / 10) as u8;
        *ones = b'0' + (n % 10) as u8;
    }
}

/// The formatted `Date` for the current second, so an event loop formats it once a second
/// instead of once per response.
#[derive(Debug, Clone)]
pub struct DateCache {
    secs: Option<u64>,
    formatted: [u8; 29],
}

impl DateCache {
    /// An empty cache; the first `get` formats.
    pub fn new() -> Self {
        DateCache {
            secs: None,
            formatted: [0; 29],
        }
    }

    /// The IMF-fixdate for `now`; a clock before 1970 reads as the epoch.
    pub fn get(&mut self, now: SystemTime) -> &[u8] {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if self.secs != Some(secs) {
            self.formatted = http_date(secs);
            self.secs = Some(secs);
        }
        &self.formatted
    }
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn date(secs: u64) -> String {
        String::from_utf8(http_date(secs).to_vec()).unwrap()
    }

    #[test]
    fn known_dates() {
        assert_eq!(date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(date(951_868_800), "Wed, 01 Mar 2000 00:00:00 GMT");
        assert_eq!(date(1_709_164_800), "Thu, 29 Feb 2024 00:00:00 GMT");
        assert_eq!(date(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
        assert_eq!(date(2_147_483_647), "Tue, 19 Jan 2038 03:14:07 GMT");
        assert_eq!(date(4_294_967_296), "Sun, 07 Feb 2106 06:28:16 GMT");
        assert_eq!(date(LAST_FIXDATE), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn far_future_is_clamped() {
        assert_eq!(date(LAST_FIXDATE + 1), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn civil_fields() {
        assert_eq!(civil_from_unix(0), (1970, 1, 1, 0, 0, 0, 4));
        assert_eq!(civil_from_unix(784_111_777), (1994, 11, 6, 8, 49, 37, 0));
        assert_eq!(
            civil_from_unix(951_782_400 - 1),
            (2000, 2, 28, 23, 59, 59, 1)
        );
        assert_eq!(civil_from_unix(LAST_FIXDATE + 1), (10000, 1, 1, 0, 0, 0, 6));
        // Must not overflow at the very top of the range.
        let (year, month, day, ..) = civil_from_unix(u64::MAX);
        assert!(year > 500_000_000_000);
        assert!((1..=12).contains(&month) && (1..=31).contains(&day));
    }

    #[test]
    fn civil_days_walk_consistently() {
        // Every day from 1970-01-01 forward for 1200 years: consecutive days advance the date by
        // exactly one and the weekday by one.
        let mut prev = civil_from_unix(0);
        for d in 1..(1200 * 366) {
            let cur = civil_from_unix(d * 86_400 + 3661);
            assert_eq!((cur.3, cur.4, cur.5), (1, 1, 1));
            assert_eq!(cur.6, (prev.6 + 1) % 7);
            let next_day = cur.2 == prev.2 + 1 && cur.1 == prev.1 && cur.0 == prev.0;
            let next_month = cur.2 == 1 && cur.1 == prev.1 + 1 && cur.0 == prev.0;
            let next_year = cur.2 == 1 && cur.1 == 1 && prev.1 == 12 && cur.0 == prev.0 + 1;
            assert!(next_day || next_month || next_year, "{prev:?} -> {cur:?}");
            if next_month || next_year {
                let leap = (prev.0 % 4 == 0 && prev.0 % 100 != 0) || prev.0 % 400 == 0;
                let len = match prev.1 {
                    2 if leap => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                assert_eq!(prev.2, len, "{prev:?}");
            }
            prev = cur;
        }
    }

    #[test]
    fn cache_reformats_only_on_a_new_second() {
        let mut cache = DateCache::default();
        let t = UNIX_EPOCH + Duration::from_millis(784_111_777_100);
        assert_eq!(cache.get(t), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            cache.get(t + Duration::from_millis(800)),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            cache.get(t + Duration::from_millis(900)),
            b"Sun, 06 Nov 1994 08:49:38 GMT"
        );
        assert_eq!(
            cache.get(UNIX_EPOCH - Duration::from_secs(5)),
            b"Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }
}
