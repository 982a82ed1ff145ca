//! ALB's wildcard patterns: `*` matches any run of characters (also none), `?` exactly one;
//! every other character stands for itself. A pattern is checked once at load and kept as
//! bytes; matching allocates nothing and backtracks only to the last `*` seen, so its cost is
//! bounded by the lengths of pattern and text.

/// A compiled pattern. Case-insensitive patterns are stored lower case at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    bytes: Box<[u8]>,
    case_insensitive: bool,
    literal: bool,
}

impl Pattern {
    pub fn new(text: &str, case_insensitive: bool) -> Pattern {
        let text = if case_insensitive {
            text.to_ascii_lowercase()
        } else {
            text.to_string()
        };
        Pattern {
            literal: !has_wildcard(&text),
            bytes: text.into_bytes().into_boxed_slice(),
            case_insensitive,
        }
    }

    /// The pattern holds no `*` or `?`.
    pub fn is_literal(&self) -> bool {
        self.literal
    }

    pub fn as_str(&self) -> &str {
        // Built from a `&str`; lower-casing ASCII keeps it UTF-8.
        std::str::from_utf8(&self.bytes).unwrap_or("")
    }

    /// The characters before the first wildcard.
    pub fn literal_head(&self) -> &str {
        let s = self.as_str();
        &s[..s.find(['*', '?']).unwrap_or(s.len())]
    }

    pub fn matches(&self, text: &str) -> bool {
        let t = text.as_bytes();
        if self.literal {
            return if self.case_insensitive {
                t.eq_ignore_ascii_case(&self.bytes)
            } else {
                *t == *self.bytes
            };
        }
        let eq = |p: u8, c: u8| {
            p == b'?'
                || if self.case_insensitive {
                    p == c.to_ascii_lowercase()
                } else {
                    p == c
                }
        };
        let p = &self.bytes;
        let (mut pi, mut ti) = (0usize, 0usize);
        // Where the last `*` was, and the text position it has consumed up to.
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ti));
                pi += 1;
            } else if pi < p.len() && (p[pi] != b'?' || is_char_start(t, ti)) && eq(p[pi], t[ti]) {
                pi += 1;
                ti += 1;
                // `?` is one character: step over a multi-byte character's continuation bytes.
                if p[pi - 1] == b'?' {
                    while ti < t.len() && !is_char_start(t, ti) {
                        ti += 1;
                    }
                }
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&b| b == b'*')
    }
}

fn is_char_start(t: &[u8], i: usize) -> bool {
    (t[i] as i8) >= -0x40
}

pub fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn alb_wildcards() {
        let cases = [
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", ".example.com", true),
            ("app-?.example.com", "app-1.example.com", true),
            ("app-?.example.com", "app-12.example.com", false),
            ("/img/*", "/img/a/b.png", true),
            ("/img/*", "/img", false),
            ("/*/edit", "/a/b/edit", true),
            ("/*/edit", "/a/b/edit/x", false),
            ("*", "", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("?", "é", true),
            ("??", "é", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (pat, text, want) in cases {
            assert_eq!(
                Pattern::new(pat, false).matches(text),
                want,
                "{pat} ~ {text}"
            );
        }
    }

    #[test]
    fn case_folding_is_chosen_per_pattern() {
        assert!(Pattern::new("Canary-*", true).matches("CANARY-7"));
        assert!(!Pattern::new("/Admin/*", false).matches("/admin/x"));
        assert!(Pattern::new("/Admin/*", false).matches("/Admin/x"));
        assert!(Pattern::new("beta", true).matches("BeTa"));
    }
}
