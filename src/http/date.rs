//! HTTP dates: IMF-fixdate formatting and a once-a-second cache.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::text::{MONTHS, civil_from_unix};

/// 9999-12-31T23:59:59Z, the last instant IMF-fixdate's four-digit year can express.
const LAST_FIXDATE: u64 = 253_402_300_799;

const WEEKDAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];

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
        .unwrap_or("Jan");
    out[0..3].copy_from_slice(wd);
    two_digits(&mut out[5..7], day);
    out[8..11].copy_from_slice(mon.as_bytes());
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
