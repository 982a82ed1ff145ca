//! Durations written the way operators write them: `500ms`, `90s`, `15m`, `1h`, `7d`, and
//! sums such as `1h30m`.

use std::time::Duration;

/// Parses a duration; `None` for anything malformed or out of range.
pub fn parse(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(ms)?)?;
    }
    Some(Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table() {
        let cases = [
            ("15m", Some(900_000)),
            ("7d", Some(604_800_000)),
            ("500ms", Some(500)),
            ("1h30m", Some(5_400_000)),
            ("60s", Some(60_000)),
            ("", None),
            ("10", None),
            ("m", None),
            ("5 minutes", None),
            ("-1s", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).map(|d| d.as_millis() as u64), want, "{text}");
        }
    }
}
