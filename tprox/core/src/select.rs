//! Choosing cases with `--only` and `--skip`.
//!
//! A pattern is a glob over case ids when it contains `*`, `?` or `[`, and an id prefix
//! otherwise: `shutdown/` selects the group, `echo/chain` both chains, `timeout/*` every timeout
//! case.

use crate::case::Case;

/// A parsed `--only` or `--skip` pattern.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// Matches ids that start with the text (`shutdown` matches `shutdown/one-way`).
    Prefix(String),
    /// Matches ids by a glob (`*/reset-*`).
    Glob(glob::Pattern),
}

impl Pattern {
    /// Parses a pattern: a glob when it has `*`, `?` or `[`, else a prefix.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains(['*', '?', '[']) {
            glob::Pattern::new(text)
                .map(Pattern::Glob)
                .map_err(|e| format!("invalid pattern '{text}': {e}"))
        } else {
            Ok(Pattern::Prefix(text.to_string()))
        }
    }

    /// True when the pattern selects the case id.
    pub fn matches(&self, id: &str) -> bool {
        match self {
            Pattern::Prefix(prefix) => id.starts_with(prefix.as_str()),
            Pattern::Glob(glob) => glob.matches(id),
        }
    }

    /// The pattern as written.
    pub fn text(&self) -> &str {
        match self {
            Pattern::Prefix(prefix) => prefix,
            Pattern::Glob(glob) => glob.as_str(),
        }
    }
}

/// The cases of `catalogue` that match any `only` pattern (all, if there are none) and no `skip`
/// pattern, in catalogue order; plus the patterns that matched no case at all, so that a typo
/// can be pointed out.
pub fn select<'a>(
    catalogue: &[&'a Case],
    only: &[Pattern],
    skip: &[Pattern],
) -> (Vec<&'a Case>, Vec<String>) {
    let chosen = catalogue
        .iter()
        .copied()
        .filter(|case| only.is_empty() || only.iter().any(|p| p.matches(case.id)))
        .filter(|case| !skip.iter().any(|p| p.matches(case.id)))
        .collect();
    let unmatched = only
        .iter()
        .chain(skip)
        .filter(|p| !catalogue.iter().any(|case| p.matches(case.id)))
        .map(|p| p.text().to_string())
        .collect();
    (chosen, unmatched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cases::CATALOGUE;
    use rstest::rstest;

    fn ids(only: &[&str], skip: &[&str]) -> Vec<&'static str> {
        let parse = |v: &[&str]| {
            v.iter()
                .map(|p| Pattern::parse(p).unwrap())
                .collect::<Vec<_>>()
        };
        select(CATALOGUE, &parse(only), &parse(skip))
            .0
            .iter()
            .map(|c| c.id)
            .collect()
    }

    #[rstest]
    #[case(&["echo/"], &[], &["echo/single", "echo/chain-2", "echo/chain-20"])]
    #[case(&["echo/chain"], &[], &["echo/chain-2", "echo/chain-20"])]
    #[case(&["echo/chain-2"], &[], &["echo/chain-2", "echo/chain-20"])]
    #[case(&["timeout/lazy-*"], &[], &["timeout/lazy-forward", "timeout/lazy-reverse"])]
    #[case(&["echo/*", "close/e"], &["echo/chain*"], &["echo/single", "close/early"])]
    fn patterns_select_by_prefix_or_glob(
        #[case] only: &[&str],
        #[case] skip: &[&str],
        #[case] expected: &[&str],
    ) {
        assert_eq!(ids(only, skip), expected);
    }

    #[test]
    fn skip_alone_removes_from_the_whole_catalogue() {
        let all = ids(&[], &[]);
        let rest = ids(&[], &["timeout/"]);
        let timeouts = all.iter().filter(|id| id.starts_with("timeout/")).count();
        assert!(timeouts >= 3);
        assert_eq!(rest.len(), all.len() - timeouts);
        assert!(rest.iter().all(|id| !id.starts_with("timeout/")));
    }

    #[test]
    fn unmatched_patterns_are_reported() {
        let only = [
            Pattern::parse("nosuch/").unwrap(),
            Pattern::parse("echo/").unwrap(),
        ];
        let (chosen, unmatched) = select(CATALOGUE, &only, &[]);
        assert_eq!(chosen.len(), 3);
        assert_eq!(unmatched, ["nosuch/"]);
    }

    #[test]
    fn a_bad_glob_is_an_error_not_a_panic() {
        assert!(Pattern::parse("echo/[")
            .unwrap_err()
            .contains("invalid pattern"));
    }
}
