//! Globs over repository (`owner/name`) and workflow names, as quotas and priority rules use
//! them: `*` matches any run of characters and `?` one character, never across the `/` of a
//! repository name, case-insensitively (GitHub's names are case-insensitive).

/// A checked glob, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// A glob over `owner/name`: two non-empty parts of letters, digits, `.`, `_`, `-`, `*`, `?`.
    pub fn repository(pattern: &str) -> Result<Glob, String> {
        let parts: Vec<&str> = pattern.split('/').collect();
        let well_formed = parts.len() == 2
            && parts.iter().all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-*?".contains(c))
            });
        if !well_formed {
            return Err(format!(
                "`{pattern}` is not a glob over owner/name like `acme/*` or `acme/api-?`"
            ));
        }
        Ok(Glob(pattern.to_ascii_lowercase()))
    }

    /// A glob over workflow names: any non-empty text (no `[` classes).
    pub fn workflow(pattern: &str) -> Result<Glob, String> {
        if pattern.trim().is_empty() || pattern.contains('[') {
            return Err(format!(
                "`{pattern}` is not a workflow name or a glob with `*` and `?`"
            ));
        }
        Ok(Glob(pattern.to_lowercase()))
    }

    /// A glob that matches no name (`/` alone: every name has text around its slash).
    pub fn never() -> Glob {
        Glob("/".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` matches (case-insensitive; `*` and `?` never match a `/`).
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.to_lowercase().chars().collect();
        let pattern: Vec<char> = self.0.chars().collect();
        wildcard_match(&pattern, &text)
    }
}

/// Iterative wildcard matching with one backtrack point per `*` (linear in practice).
fn wildcard_match(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some('?') if text[t] != '/' => {
                p += 1;
                t += 1;
            }
            Some(c) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // The star takes one more character, unless that would cross a `/`.
                Some((sp, st)) if text[st] != '/' => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                _ => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Whether any of `globs` matches `text`.
pub fn any_matches(globs: &[Glob], text: &str) -> bool {
    globs.iter().any(|g| g.matches(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_globs_match_within_a_part() {
        let g = Glob::repository("acme/*").unwrap();
        assert!(g.matches("acme/api"));
        assert!(g.matches("ACME/Web"));
        assert!(!g.matches("acme2/api"));
        assert!(!g.matches("other/acme"));
        let g = Glob::repository("*/prod-?").unwrap();
        assert!(g.matches("x/prod-1"));
        assert!(!g.matches("x/prod-12"));
        let g = Glob::repository("a*/b").unwrap();
        assert!(!g.matches("a/x/b"), "a star never crosses the slash");
        assert!(Glob::repository("*/*").unwrap().matches("o/r"));
    }

    #[test]
    fn malformed_globs_are_refused() {
        for bad in ["", "acme", "acme/", "/x", "a/b/c", "acme/[ab]", "ac me/x"] {
            assert!(Glob::repository(bad).is_err(), "{bad}");
        }
        assert!(Glob::workflow(" ").is_err());
        assert!(
            Glob::workflow("Release *")
                .unwrap()
                .matches("release nightly")
        );
    }
}
