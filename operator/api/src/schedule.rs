//! Cron schedules: the standard five fields (`min hour dom month dow`), or six with
//! seconds first, read in an IANA time zone (UTC by default).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
    text: String,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.zone == other.zone
    }
}

/// Why a cron schedule or its time zone cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "cron.schedule {schedule:?} has {fields} fields; give 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
    )]
    FieldCount { schedule: String, fields: usize },
    #[error("cron.schedule {schedule:?}: {source}")]
    Cron {
        schedule: String,
        #[source]
        source: croner::errors::CronError,
    },
    #[error("cron.timezone {name:?} is not an IANA time zone (e.g. Europe/Berlin)")]
    TimeZone {
        name: String,
        #[source]
        source: chrono_tz::ParseError,
    },
}

impl Schedule {
    /// Parses `schedule` (5 or 6 fields) in `timezone` (default UTC); `Err` says what
    /// is wrong, for the EventSource's condition.
    pub fn parse(schedule: &str, timezone: Option<&str>) -> Result<Self, ScheduleError> {
        let fields = schedule.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(ScheduleError::FieldCount {
                schedule: schedule.to_owned(),
                fields,
            });
        }
        let cron = Cron::new(schedule)
            .with_seconds_optional()
            .parse()
            .map_err(|source| ScheduleError::Cron {
                schedule: schedule.to_owned(),
                source,
            })?;
        let zone = match timezone {
            None | Some("") => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|source| ScheduleError::TimeZone {
                    name: name.to_owned(),
                    source,
                })?,
        };
        Ok(Schedule {
            cron,
            zone,
            text: schedule.to_owned(),
        })
    }

    /// The first tick strictly after `after`.
    #[must_use]
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The last tick at or before `at`, if it is no older than `within` (so an adapter
    /// that restarts inside a tick's grace period still fires it).
    #[must_use]
    pub fn last_at_or_before(
        &self,
        at: DateTime<Utc>,
        within: chrono::Duration,
    ) -> Option<DateTime<Utc>> {
        let start = at - within;
        let mut tick = self.next_after(start - chrono::Duration::nanoseconds(1))?;
        let mut last = None;
        while tick <= at {
            last = Some(tick);
            tick = self.next_after(tick)?;
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_and_six_fields() {
        let every_5_min = Schedule::parse("*/5 * * * *", None).unwrap();
        assert_eq!(
            every_5_min.next_after(utc("2026-01-01T10:02:30Z")),
            Some(utc("2026-01-01T10:05:00Z"))
        );
        let every_2_s = Schedule::parse("*/2 * * * * *", None).unwrap();
        assert_eq!(
            every_2_s.next_after(utc("2026-01-01T10:00:01Z")),
            Some(utc("2026-01-01T10:00:02Z"))
        );
        assert_eq!(
            every_2_s.next_after(utc("2026-01-01T10:00:02Z")),
            Some(utc("2026-01-01T10:00:04Z")),
            "strictly after"
        );
    }

    #[test]
    fn time_zones_shift_the_ticks() {
        let nine_berlin = Schedule::parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
        // 09:00 in Berlin in January is 08:00 UTC.
        assert_eq!(
            nine_berlin.next_after(Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap()),
            Some(utc("2026-01-05T08:00:00Z"))
        );
    }

    #[test]
    fn bad_schedules_say_why() {
        assert!(
            Schedule::parse("* * *", None)
                .unwrap_err()
                .to_string()
                .contains("3 fields")
        );
        assert!(
            Schedule::parse("61 * * * *", None)
                .unwrap_err()
                .to_string()
                .contains("cron.schedule")
        );
        assert!(
            Schedule::parse("* * * * *", Some("Mars/Olympus"))
                .unwrap_err()
                .to_string()
                .contains("IANA")
        );
    }

    #[test]
    fn a_restart_inside_the_grace_period_finds_the_missed_tick() {
        let every_min = Schedule::parse("* * * * *", None).unwrap();
        let grace = chrono::Duration::seconds(10);
        assert_eq!(
            every_min.last_at_or_before(utc("2026-01-01T10:00:04Z"), grace),
            Some(utc("2026-01-01T10:00:00Z"))
        );
        assert_eq!(
            every_min.last_at_or_before(utc("2026-01-01T10:00:30Z"), grace),
            None
        );
    }
}
