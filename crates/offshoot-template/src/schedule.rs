//! Five-field cron schedules (minute hour day-of-month month day-of-week), as cron jobs,
//! dataset refreshes and sleep and wake schedules are written. Pure: the caller gives the time
//! (and the time zone, when it is not UTC).

/// A schedule: five cron fields, or one of `@hourly`, `@daily`, `@weekly`, `@monthly`,
/// `@yearly`; seconds are not accepted.
#[derive(Clone, Debug)]
pub struct Schedule(croner::Cron);

/// The descriptors a schedule may be instead of five fields.
const DESCRIPTORS: &[&str] = &["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"];

impl Schedule {
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let fields = s.split_whitespace().count();
        if !(fields == 5 || fields == 1 && DESCRIPTORS.contains(&s.trim())) {
            return Err(format!("`{s}` has {fields} fields; a schedule has five: minute hour day-of-month month day-of-week"));
        }
        s.parse::<croner::Cron>().map(Schedule).map_err(|e| format!("`{s}` is not a cron schedule: {e}"))
    }

    /// The first time after `after_ms` (milliseconds since the epoch) it fires, in UTC.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let t = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(after_ms)?;
        self.0.find_next_occurrence(&t, false).ok().map(|n| n.timestamp_millis())
    }

    /// The last time at or before `at_ms` it fired (UTC), if after `after_ms`; with how many
    /// times it fired in `(after_ms, at_ms]`, counted up to `cap`.
    pub fn last_between(&self, after_ms: i64, at_ms: i64, cap: u32) -> Option<(i64, u32)> {
        // Schedules have whole minutes: the last minute begun at `at_ms`.
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at_ms - at_ms.rem_euclid(60_000))?;
        let last = self.0.find_previous_occurrence(&at, true).ok()?.timestamp_millis();
        if last <= after_ms {
            return None;
        }
        let mut count = 1;
        let mut t = after_ms;
        while count < cap
            && let Some(next) = self.next_after(t).filter(|n| *n < last)
        {
            count += 1;
            t = next;
        }
        Some((last, count))
    }

    /// The first time after `after_ms` it fires, its fields read in time zone `tz` (the
    /// caller's: sleep and wake schedules are the server's local time).
    pub fn next_after_in<Tz: chrono::TimeZone>(&self, after_ms: i64, tz: &Tz) -> Option<i64> {
        let t = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(after_ms)?.with_timezone(tz);
        self.0.find_next_occurrence(&t, false).ok().map(|n| n.timestamp_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn five_fields_or_a_descriptor() {
        assert!(Schedule::parse("*/5 * * * *").is_ok());
        assert!(Schedule::parse("@daily").is_ok());
        assert!(Schedule::parse("0 0 3 * * *").is_err(), "no seconds");
        assert!(Schedule::parse("0 3 * *").is_err());
        assert!(Schedule::parse("0 25 * * *").is_err());
        assert!(Schedule::parse("@sometimes").is_err());
    }

    #[test]
    fn the_last_occurrence_in_a_window_and_how_many() {
        let every5 = Schedule::parse("*/5 * * * *").expect("parses");
        assert_eq!(every5.last_between(0, 4 * MIN, 10), None);
        assert_eq!(every5.last_between(0, 5 * MIN, 10), Some((5 * MIN, 1)));
        assert_eq!(every5.last_between(5 * MIN, 5 * MIN, 10), None, "not twice");
        assert_eq!(every5.last_between(0, 23 * MIN, 10), Some((20 * MIN, 4)));
        // A year missed: the latest occurrence, counted up to the cap.
        let (last, n) = every5.last_between(0, 365 * 24 * 60 * MIN + 7 * MIN, 50).expect("some");
        assert_eq!((last, n), (365 * 24 * 60 * MIN + 5 * MIN, 50));
    }
}
