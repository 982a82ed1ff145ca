//! Recovery codes: ten per enrolment, each 80 random bits written as 16 characters of
//! Crockford's base32 in groups of four (`7kq2-…`), shown once and stored only as SHA-256
//! hashes (80 bits make a dump useless to brute-force). Each signs in once.

/// Codes issued per enrolment.
pub const COUNT: usize = 10;
const LEN: usize = 16;
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A fresh set of codes, formatted for display.
pub fn generate() -> Vec<String> {
    let rng = ring::rand::SystemRandom::new();
    (0..COUNT)
        .map(|_| {
            let mut b = [0u8; LEN];
            ring::rand::SecureRandom::fill(&rng, &mut b).expect("system RNG available");
            let chars: Vec<char> = b
                .iter()
                .map(|x| ALPHABET[usize::from(x & 31)] as char)
                .collect();
            chars
                .chunks(4)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// The canonical form of a typed code (case, dashes, spaces and the look-alikes i/l → 1,
/// o → 0 do not matter), or `None` when it cannot be a recovery code.
pub fn normalise(typed: &str) -> Option<String> {
    let s: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_lowercase() {
            'i' | 'l' => '1',
            'o' => '0',
            other => other,
        })
        .collect();
    (s.len() == LEN && s.bytes().all(|b| ALPHABET.contains(&b))).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_read_back() {
        let codes = generate();
        assert_eq!(codes.len(), COUNT);
        for c in &codes {
            assert_eq!(c.len(), 19, "{c}");
            let n = normalise(c).unwrap();
            assert_eq!(normalise(&c.to_uppercase().replace('-', " ")), Some(n));
        }
        let mut sorted = codes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), COUNT);
        assert_eq!(normalise("123456"), None);
        assert_eq!(normalise("uuuu-uuuu-uuuu-uuuu"), None);
        assert_eq!(
            normalise("OOOO-IIII-LLLL-0000").as_deref(),
            Some("0000111111110000")
        );
    }
}
