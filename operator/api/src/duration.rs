//! Durations as users write them in Herald resources.
//!
//! Two notations are accepted, because both are familiar to Kubernetes users:
//! Go/Kubernetes style (`90s`, `1h30m`, `500ms`, as in `metav1.Duration`) and
//! ISO-8601 (`PT10S`, `P1DT12H`, as Knative's delivery settings use). Years and
//! months are refused: their length depends on the calendar.

use std::time::Duration;

/// Regular expression the CRD schema puts on duration fields, so that the apiserver
/// refuses most malformed values before Herald sees them. [`parse`] is the full check.
pub const SCHEMA_PATTERN: &str =
    r"^(P(\d+W)?(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?|0|(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+)$";

/// Why a duration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {why} (use e.g. \"30s\", \"1h30m\" or ISO-8601 \"PT30S\")")]
pub struct ParseDurationError {
    input: String,
    why: &'static str,
}

fn err(input: &str, why: &'static str) -> ParseDurationError {
    ParseDurationError {
        input: input.to_owned(),
        why,
    }
}

/// [`parse`] for a command-line flag (clap's `value_parser`).
pub fn parse_flag(input: &str) -> Result<Duration, ParseDurationError> {
    parse(input)
}

/// Parses a duration in Go style or ISO-8601 notation.
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(err(input, "empty"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if let Some(rest) = s.strip_prefix('P') {
        parse_iso(input, rest)
    } else {
        parse_go(input, s)
    }
}

/// Splits a leading decimal number (`12`, `1.5`) off `s`.
fn leading_number(s: &str) -> Option<(f64, &str)> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    let value = s[..end].parse::<f64>().ok()?;
    Some((value, &s[end..]))
}

fn seconds(input: &str, total: f64) -> Result<Duration, ParseDurationError> {
    Duration::try_from_secs_f64(total).map_err(|_| err(input, "out of range"))
}

fn parse_go(input: &str, mut s: &str) -> Result<Duration, ParseDurationError> {
    let mut total = 0.0;
    while !s.is_empty() {
        let (value, rest) = leading_number(s).ok_or_else(|| err(input, "expected a number"))?;
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(err(input, "missing unit")),
            _ => return Err(err(input, "unknown unit (ns, us, ms, s, m, h)")),
        };
        total += value * factor;
        s = &rest[unit_len..];
    }
    seconds(input, total)
}

fn parse_iso(input: &str, rest: &str) -> Result<Duration, ParseDurationError> {
    if rest.is_empty() || rest == "T" {
        return Err(err(input, "no components after P"));
    }
    let (date, time) = match rest.split_once('T') {
        Some((_, "")) => {
            return Err(err(
                input,
                "T must be followed by hours, minutes or seconds",
            ));
        }
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = 0.0;
    total += iso_components(input, date, &[('W', 604_800.0), ('D', 86_400.0)])?;
    if let Some(time) = time {
        total += iso_components(input, time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    seconds(input, total)
}

/// Sums `<number><designator>` components that must appear in the order of `units`.
fn iso_components(
    input: &str,
    mut s: &str,
    units: &[(char, f64)],
) -> Result<f64, ParseDurationError> {
    let mut total = 0.0;
    let mut next_unit = 0;
    while !s.is_empty() {
        let (value, rest) = leading_number(s).ok_or_else(|| err(input, "expected a number"))?;
        let designator = rest
            .chars()
            .next()
            .ok_or_else(|| err(input, "missing designator"))?;
        if matches!(designator, 'Y') || (designator == 'M' && units[0].0 == 'W') {
            return Err(err(
                input,
                "years and months are not fixed lengths; use days",
            ));
        }
        let pos = units[next_unit..]
            .iter()
            .position(|(u, _)| *u == designator)
            .ok_or_else(|| err(input, "unexpected or out-of-order designator"))?;
        total += value * units[next_unit + pos].1;
        next_unit += pos + 1;
        s = &rest[designator.len_utf8()..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn iso_8601() {
        assert_eq!(parse("PT10S"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("PT0.2S"), Ok(Duration::from_millis(200)));
        assert_eq!(parse("P1DT12H"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse("P1W"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse("PT1H30M"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn rejects_with_reason() {
        for bad in [
            "", "10", "10x", "P", "PT", "P1Y", "P1M", "PT1S1M", "P1DT", "abc", "1h-2m",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.to_string().contains("invalid duration"), "{bad}: {e}");
        }
        assert!(parse("P1M").unwrap_err().to_string().contains("months"));
    }

    #[test]
    fn schema_pattern_agrees_on_common_values() {
        // The regex is a coarse pre-filter for the apiserver; `parse` is authoritative.
        let re_ok = ["90s", "1h30m", "PT10S", "P1DT12H", "0", "500ms"];
        for v in re_ok {
            assert!(parse(v).is_ok(), "{v}");
        }
    }
}
