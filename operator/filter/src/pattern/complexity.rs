//! EventBridge's limit on `wildcard` patterns ("Rule is too complex").
//!
//! EventBridge measures the wildcard patterns (`wildcard` and `anything-but` +
//! `wildcard`) that one field of a rule tests: the *complexity* is the largest number of
//! pattern prefixes that one input string can match at once (for `a*b*bb` and `abbb`:
//! `a*`, `a*b`, `a*b*`, `a*b*b`, `a*b*bb`, so 5). Patterns are measured as the engine
//! stores them, inside the string's double quotes. Many wildcards, or characters that
//! repeat after a wildcard, raise it; a rule whose field goes over [`MAX_COMPLEXITY`]
//! is refused.
//!
//! The measure explores the sets of pattern positions that some input reaches (a subset
//! construction over the bytes the patterns use), so it is exact; exploration stops as
//! soon as the limit is passed.

use std::collections::HashSet;

/// The most prefixes one input may match at once. EventBridge does not publish its
/// limit; this is the per-rule limit its engine's documentation suggests, and it agrees
/// with the rules EventBridge is known to accept (9) and to refuse (12).
pub(crate) const MAX_COMPLEXITY: usize = 10;

/// More position sets than this and the patterns count as too complex.
const MAX_STATES: usize = 20_000;

/// A pattern position: (pattern, number of elements matched).
type Position = (u32, u32);

/// An element of a pattern.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sym {
    Byte(u8),
    Star,
}

/// The complexity of `patterns` (bytes, `None` for `*`), or `None` once it is over
/// [`MAX_COMPLEXITY`].
pub(crate) fn within_limit(patterns: &[Vec<Option<u8>>]) -> Option<usize> {
    let mut quoted: Vec<Vec<Sym>> = Vec::with_capacity(patterns.len());
    for p in patterns {
        let mut q = Vec::with_capacity(p.len() + 2);
        q.push(Sym::Byte(b'"'));
        q.extend(p.iter().map(|b| b.map_or(Sym::Star, Sym::Byte)));
        q.push(Sym::Byte(b'"'));
        // Identical patterns share their states.
        if !quoted.contains(&q) {
            quoted.push(q);
        }
    }
    let mut alphabet: Vec<Option<u8>> = quoted
        .iter()
        .flatten()
        .filter_map(|s| match s {
            Sym::Byte(b) => Some(Some(*b)),
            Sym::Star => None,
        })
        .collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    // Any other byte: it matches only the wildcards.
    alphabet.push(None);

    let machine = Machine { patterns: quoted };
    let start = machine.close(
        (0u32..)
            .zip(&machine.patterns)
            .map(|(p, _)| (p, 0))
            .collect(),
    );
    let mut seen: HashSet<Vec<Position>> = HashSet::from([start.clone()]);
    let mut queue = vec![start];
    let mut most = 0;
    while let Some(state) = queue.pop() {
        for byte in &alphabet {
            let next = machine.step(&state, *byte);
            if next.is_empty() {
                continue;
            }
            most = most.max(next.iter().filter(|(_, at)| *at > 0).count());
            if most > MAX_COMPLEXITY {
                return None;
            }
            if seen.insert(next.clone()) {
                if seen.len() > MAX_STATES {
                    return None;
                }
                queue.push(next);
            }
        }
    }
    Some(most)
}

struct Machine {
    patterns: Vec<Vec<Sym>>,
}

impl Machine {
    fn elem(&self, (p, at): Position) -> Option<Sym> {
        self.patterns
            .get(p as usize)
            .and_then(|e| e.get(at as usize))
            .copied()
    }

    /// Adds the positions after each `*` that a position reaches without input.
    fn close(&self, mut positions: Vec<Position>) -> Vec<Position> {
        let mut i = 0;
        while let Some(&(p, at)) = positions.get(i) {
            if self.elem((p, at)) == Some(Sym::Star) && !positions.contains(&(p, at + 1)) {
                positions.push((p, at + 1));
            }
            i += 1;
        }
        positions.sort_unstable();
        positions.dedup();
        positions
    }

    /// The positions after reading `byte` (`None`: a byte no pattern names).
    fn step(&self, state: &[Position], byte: Option<u8>) -> Vec<Position> {
        let mut next = Vec::new();
        for &(p, at) in state {
            // A `*` just matched keeps matching.
            if at > 0 && self.elem((p, at - 1)) == Some(Sym::Star) {
                next.push((p, at));
            }
            if let (Some(b), Some(Sym::Byte(want))) = (byte, self.elem((p, at))) {
                if b == want {
                    next.push((p, at + 1));
                }
            }
        }
        self.close(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The complexity of patterns written as in a rule (`*` is the wildcard).
    fn of(patterns: &[&str]) -> Option<usize> {
        let bytes: Vec<Vec<Option<u8>>> = patterns
            .iter()
            .map(|p| p.bytes().map(|b| (b != b'*').then_some(b)).collect())
            .collect();
        within_limit(&bytes)
    }

    #[test]
    fn single_patterns() {
        // Each input names the prefixes it matches at once.
        assert_eq!(of(&["*"]), Some(2), "`\"` and `\"*`");
        assert_eq!(
            of(&["a*b*bb"]),
            Some(5),
            "abbb: a*, a*b, a*b*, a*b*b, a*b*bb"
        );
        assert_eq!(of(&["*ab*ad"]), Some(4));
        assert_eq!(of(&["a*bbb"]), Some(4));
        assert_eq!(of(&["abc"]), Some(1));
        assert_eq!(of(&["arn:aws:events:us-east-1:*:event-bus/*"]), Some(3));
        assert_eq!(of(&["/Users/*/dir/dir/dir/dir/dir/doc.txt"]), Some(7));
    }

    #[test]
    fn several_patterns_add_up() {
        assert_eq!(of(&["a*aaa", "aa*aa"]), Some(7));
        assert_eq!(of(&["ab*cd", "ab*wx", "ab*yz"]), Some(6));
        assert_eq!(of(&["ab*c", "ab*c"]), Some(2), "duplicates count once");
        let three: Vec<String> = ["Shared", "Tracker", "Driver"]
            .iter()
            .map(|n| format!("*:stack/{n}Stack/*"))
            .collect();
        let refs: Vec<&str> = three.iter().map(String::as_str).collect();
        assert_eq!(of(&refs), Some(9), "accepted by EventBridge");
    }

    #[test]
    fn long_patterns_are_measured_quickly() {
        let long = format!("a{}", "b".repeat(3000));
        let cyclic: String = (0..3000).map(|i| ["x", "y", "z"][i % 3]).collect();
        let started = std::time::Instant::now();
        assert_eq!(of(&[&format!("x*{long}")]), Some(2));
        assert!(of(&[&format!("*{long}*{long}*")]).is_some());
        // A sequence that repeats after a wildcard can be matched at many offsets.
        assert_eq!(of(&[&format!("*{cyclic}")]), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn over_the_limit() {
        assert_eq!(of(&["*:*:*:*:*:event-bus/*"]), None);
        assert_eq!(of(&["*a*a*a*a*a*a*a*a*"]), None);
        let four: Vec<String> = ["Shared", "Tracker", "Driver", "Monitoring"]
            .iter()
            .map(|n| format!("*:stack/{n}Stack/*"))
            .collect();
        let refs: Vec<&str> = four.iter().map(String::as_str).collect();
        assert_eq!(of(&refs), None, "refused by EventBridge");
    }
}
