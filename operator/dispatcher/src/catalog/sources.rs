//! The sources of an event type, as at most [`MAX_SOURCE_PATTERNS`] patterns: each a
//! source exactly, or `prefix*`. A source that fits no pattern when the list is full
//! is folded into the pattern it shares the longest prefix with (`/orders/1` and
//! `/orders/2` become `/orders/*`), so a type sent from a million sources still lists
//! at most ten.

use herald_api::eventtype::{MAX_SOURCE_PATTERNS, SourcePattern, pattern_matches};

/// The literal part of a pattern: the source, or the prefix before `*`.
fn literal(pattern: &str) -> &str {
    pattern.strip_suffix('*').unwrap_or(pattern)
}

/// Whether every source `inner` matches also matches `outer`.
fn covers(outer: &str, inner: &str) -> bool {
    match outer.strip_suffix('*') {
        Some(prefix) => literal(inner).starts_with(prefix),
        None => outer == inner,
    }
}

/// The longest common prefix of `a` and `b`, on a character boundary.
fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let end = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or_else(|| a.len().min(b.len()), |((i, _), _)| i);
    // Equal characters up to `end` take equal bytes in both, so `end` is a character
    // boundary of `a` (and of `b`).
    &a[..end]
}

/// Adds `count` events from sources matching `pattern` to `list`, keeping it at most
/// [`MAX_SOURCE_PATTERNS`] long.
pub fn add(list: &mut Vec<SourcePattern>, pattern: &str, count: i64) {
    if let Some(existing) = list.iter_mut().find(|p| covers(&p.pattern, pattern)) {
        existing.count += count;
        return;
    }
    if list.len() < MAX_SOURCE_PATTERNS {
        list.push(SourcePattern {
            pattern: pattern.to_owned(),
            count,
        });
        absorb_covered(list, list.len() - 1);
        return;
    }
    // Full: of all the patterns, this one included, the two that share the longest
    // prefix become one (`/orders/1` and `/orders/2` → `/orders/*`). Quadratic in
    // ten, and only for a source no pattern covers.
    list.push(SourcePattern {
        pattern: pattern.to_owned(),
        count,
    });
    let shared = |list: &[SourcePattern], i: usize, j: usize| {
        common_prefix(literal(&list[i].pattern), literal(&list[j].pattern)).len()
    };
    let mut closest = (0, 1);
    for i in 0..list.len() {
        for j in i + 1..list.len() {
            if shared(list, i, j) > shared(list, closest.0, closest.1) {
                closest = (i, j);
            }
        }
    }
    let (i, j) = closest;
    let prefix = common_prefix(literal(&list[i].pattern), literal(&list[j].pattern)).to_owned();
    list[i].pattern = format!("{prefix}*");
    list[i].count += list[j].count;
    list.remove(j);
    absorb_covered(list, i);
}

/// Folds into `list[widened]` every other pattern it now covers.
fn absorb_covered(list: &mut Vec<SourcePattern>, widened: usize) {
    let outer = list[widened].pattern.clone();
    let mut absorbed = 0;
    let mut i = 0;
    list.retain(|p| {
        let keep = i == widened || !covers(&outer, &p.pattern);
        if !keep {
            absorbed += p.count;
        }
        i += 1;
        keep
    });
    if let Some(p) = list.iter_mut().find(|p| p.pattern == outer) {
        p.count += absorbed;
    }
}

/// Whether `source` is already counted by a pattern of `list` (the common case, with no
/// allocation): then its count is raised.
pub fn count_if_known(list: &mut [SourcePattern], source: &str) -> bool {
    match list
        .iter_mut()
        .find(|p| pattern_matches(&p.pattern, source))
    {
        Some(p) => {
            p.count += 1;
            true
        }
        None => false,
    }
}

/// One pattern covering every pattern of `list`: the only one, or their common prefix
/// followed by `*`.
#[must_use]
pub fn summary(list: &[SourcePattern]) -> Option<String> {
    match list {
        [] => None,
        [one] => Some(one.pattern.clone()),
        [first, rest @ ..] => {
            let prefix = rest.iter().fold(literal(&first.pattern), |prefix, p| {
                common_prefix(prefix, literal(&p.pattern))
            });
            Some(format!("{prefix}*"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[SourcePattern]) -> Vec<(&str, i64)> {
        list.iter().map(|p| (p.pattern.as_str(), p.count)).collect()
    }

    #[test]
    fn few_sources_are_listed_exactly() {
        let mut list = Vec::new();
        for source in ["shop", "billing", "shop"] {
            if !count_if_known(&mut list, source) {
                add(&mut list, source, 1);
            }
        }
        assert_eq!(patterns(&list), [("shop", 2), ("billing", 1)]);
        assert_eq!(summary(&list).as_deref(), Some("*"));
        assert_eq!(summary(&list[..1]).as_deref(), Some("shop"));
    }

    #[test]
    fn many_sources_fold_into_at_most_ten_patterns_and_keep_every_count() {
        let mut list = Vec::new();
        let mut sent = 0;
        for region in ["eu", "us", "asia"] {
            for n in 0..1000 {
                let source = format!("/shop/{region}/orders/{n}");
                if !count_if_known(&mut list, &source) {
                    add(&mut list, &source, 1);
                }
                sent += 1;
            }
        }
        assert!(list.len() <= MAX_SOURCE_PATTERNS, "{list:?}");
        assert_eq!(list.iter().map(|p| p.count).sum::<i64>(), sent);
        for region in ["eu", "us", "asia"] {
            let source = format!("/shop/{region}/orders/5000");
            assert!(
                list.iter().any(|p| p.matches(&source)),
                "{source} is covered: {list:?}"
            );
        }
        assert_eq!(summary(&list).as_deref(), Some("/shop/*"));
    }

    #[test]
    fn merging_lists_from_replicas_adds_counts_and_stays_bounded() {
        let mut stored: Vec<SourcePattern> = (0..10)
            .map(|n| SourcePattern {
                pattern: format!("tenant-{n}"),
                count: 10,
            })
            .collect();
        add(&mut stored, "tenant-3", 5);
        add(&mut stored, "tenant-1*", 7);
        assert_eq!(stored.len(), MAX_SOURCE_PATTERNS);
        assert!(
            stored
                .iter()
                .any(|p| p.pattern == "tenant-1*" && p.count == 17),
            "the closest pair merged: {stored:?}"
        );
        add(&mut stored, "other", 2);
        assert!(stored.len() <= MAX_SOURCE_PATTERNS);
        assert_eq!(stored.iter().map(|p| p.count).sum::<i64>(), 114);
        assert!(stored.iter().any(|p| p.pattern == "other"), "{stored:?}");
        assert!(stored.iter().any(|p| p.matches("tenant-7")), "{stored:?}");
    }

    #[test]
    fn multibyte_sources_fold_on_character_boundaries() {
        let mut list: Vec<SourcePattern> = Vec::new();
        for n in 0..30 {
            add(&mut list, &format!("ü{}é{n}", "ä".repeat(n % 3)), 1);
        }
        assert!(list.len() <= MAX_SOURCE_PATTERNS);
        assert_eq!(list.iter().map(|p| p.count).sum::<i64>(), 30);
    }
}
