//! Byte sizes written as Kubernetes quantities (`512Mi`, `10G`, `1000000`).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Why a quantity is not a valid byte size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid byte size {input:?}: {why} (use e.g. 1000000, \"512Mi\" or \"10G\")")]
pub struct ParseBytesError {
    input: String,
    why: &'static str,
}

/// [`parse_bytes`] for command-line flags (clap `value_parser`).
pub fn parse_flag(input: &str) -> Result<u64, ParseBytesError> {
    parse_bytes(&Quantity(input.to_owned()))
}

/// Parses a whole, non-negative number of bytes with an optional binary (`Ki`..`Ei`)
/// or decimal (`k`..`E`) suffix.
pub fn parse_bytes(q: &Quantity) -> Result<u64, ParseBytesError> {
    let input = q.0.trim();
    let fail = |why| ParseBytesError {
        input: input.to_owned(),
        why,
    };
    let digits_end = input
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(input.len());
    if digits_end == 0 {
        return Err(fail("must start with a whole number"));
    }
    let number: u64 = input[..digits_end]
        .parse()
        .map_err(|_| fail("number too large"))?;
    let multiplier: u64 = match &input[digits_end..] {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => {
            return Err(fail(
                "unknown suffix (k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei)",
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| fail("too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_owned())
    }

    #[test]
    fn parses_suffixes() {
        assert_eq!(parse_bytes(&q("1000000")), Ok(1_000_000));
        assert_eq!(parse_bytes(&q("512Mi")), Ok(512 * 1024 * 1024));
        assert_eq!(parse_bytes(&q("10G")), Ok(10_000_000_000));
        assert_eq!(parse_bytes(&q("1k")), Ok(1000));
    }

    #[test]
    fn rejects_fractions_units_and_overflow() {
        for bad in ["1.5Gi", "-1", "Mi", "10X", "100Ei", ""] {
            assert!(parse_bytes(&q(bad)).is_err(), "{bad}");
        }
    }
}
