//! The small subset of CBOR (RFC 8949) that WebAuthn uses: definite-length integers, byte and
//! text strings, arrays, maps, simple values and floats (skipped). Bounded depth and lengths
//! checked against the input, so hostile input fails cleanly instead of allocating or recursing
//! without end.

#[derive(Debug, Clone, PartialEq)]
pub enum Cbor {
    Int(i128),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Cbor>),
    Map(Vec<(Cbor, Cbor)>),
    Bool(bool),
    Null,
    /// Floats, `undefined` and other simple values (never needed here).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed CBOR")]
pub struct CborError;

const MAX_DEPTH: usize = 16;

impl Cbor {
    /// A map entry by integer key (COSE keys) or text key (attestation objects).
    pub fn get(&self, key: &Cbor) -> Option<&Cbor> {
        match self {
            Cbor::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn int_key(&self, key: i128) -> Option<&Cbor> {
        self.get(&Cbor::Int(key))
    }

    pub fn text_key(&self, key: &str) -> Option<&Cbor> {
        self.get(&Cbor::Text(key.to_string()))
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Cbor::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i128> {
        match self {
            Cbor::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Cbor::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// Room reserved for an array or map before its items are read: what it declares, up to this.
/// A declared count is only a claim (checked against the bytes left, not yet against real
/// items), so nested containers each claiming the rest of the input cannot make the decoder
/// reserve many times the input's size; longer real containers simply grow.
const MAX_PREALLOC: usize = 64;

#[cfg(test)]
thread_local! {
    /// Items reserved ahead by this thread's decoding (for the tests).
    static RESERVED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn reserve<T>(declared: usize) -> Vec<T> {
    let n = declared.min(MAX_PREALLOC);
    #[cfg(test)]
    RESERVED.with(|r| r.set(r.get() + n));
    Vec::with_capacity(n)
}

/// Decodes one item from the start of `input`; returns it and the bytes it used.
pub fn decode(input: &[u8]) -> Result<(Cbor, usize), CborError> {
    let mut pos = 0;
    let v = item(input, &mut pos, 0)?;
    Ok((v, pos))
}

fn take<'a>(input: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], CborError> {
    let end = pos.checked_add(n).ok_or(CborError)?;
    let s = input.get(*pos..end).ok_or(CborError)?;
    *pos = end;
    Ok(s)
}

fn argument(input: &[u8], pos: &mut usize, info: u8) -> Result<u64, CborError> {
    Ok(match info {
        0..=23 => u64::from(info),
        24 => u64::from(take(input, pos, 1)?[0]),
        25 => u64::from(u16::from_be_bytes(
            take(input, pos, 2)?.try_into().map_err(|_| CborError)?,
        )),
        26 => u64::from(u32::from_be_bytes(
            take(input, pos, 4)?.try_into().map_err(|_| CborError)?,
        )),
        27 => u64::from_be_bytes(take(input, pos, 8)?.try_into().map_err(|_| CborError)?),
        // Indefinite lengths and reserved values: CTAP2 uses canonical, definite encoding.
        _ => return Err(CborError),
    })
}

fn item(input: &[u8], pos: &mut usize, depth: usize) -> Result<Cbor, CborError> {
    if depth > MAX_DEPTH {
        return Err(CborError);
    }
    let first = take(input, pos, 1)?[0];
    let (major, info) = (first >> 5, first & 31);
    if major == 7 {
        return Ok(match info {
            20 => Cbor::Bool(false),
            21 => Cbor::Bool(true),
            22 => Cbor::Null,
            24 => {
                take(input, pos, 1)?;
                Cbor::Other
            }
            25 => {
                take(input, pos, 2)?;
                Cbor::Other
            }
            26 => {
                take(input, pos, 4)?;
                Cbor::Other
            }
            27 => {
                take(input, pos, 8)?;
                Cbor::Other
            }
            0..=19 | 23 => Cbor::Other,
            _ => return Err(CborError),
        });
    }
    let arg = argument(input, pos, info)?;
    // Every element takes at least one byte: a count beyond what is left is a lie.
    let count = |n: u64| -> Result<usize, CborError> {
        let n = usize::try_from(n).map_err(|_| CborError)?;
        if n > input.len().saturating_sub(*pos) {
            return Err(CborError);
        }
        Ok(n)
    };
    Ok(match major {
        0 => Cbor::Int(i128::from(arg)),
        1 => Cbor::Int(-1 - i128::from(arg)),
        2 => Cbor::Bytes(take(input, pos, count(arg)?)?.to_vec()),
        3 => Cbor::Text(
            String::from_utf8(take(input, pos, count(arg)?)?.to_vec()).map_err(|_| CborError)?,
        ),
        4 => {
            let n = count(arg)?;
            let mut v = reserve(n);
            for _ in 0..n {
                v.push(item(input, pos, depth + 1)?);
            }
            Cbor::Array(v)
        }
        5 => {
            // An entry is a key and a value: two bytes at least.
            let n = count(arg.saturating_mul(2))? / 2;
            let mut v = reserve(n);
            for _ in 0..n {
                let k = item(input, pos, depth + 1)?;
                let val = item(input, pos, depth + 1)?;
                v.push((k, val));
            }
            Cbor::Map(v)
        }
        // Tags: the tagged item stands for itself.
        6 => item(input, pos, depth + 1)?,
        _ => return Err(CborError),
    })
}

/// Encoding (shortest form), for tests and the fuzz target that build authenticator data and
/// attestation objects; the pool itself never encodes.
#[doc(hidden)]
pub fn encode(v: &Cbor) -> Vec<u8> {
    fn head(out: &mut Vec<u8>, major: u8, n: u64) {
        let m = major << 5;
        match n {
            0..=23 => out.push(m | n as u8),
            24..=0xff => out.extend([m | 24, n as u8]),
            0x100..=0xffff => {
                out.push(m | 25);
                out.extend((n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(m | 26);
                out.extend((n as u32).to_be_bytes());
            }
            _ => {
                out.push(m | 27);
                out.extend(n.to_be_bytes());
            }
        }
    }
    let mut out = Vec::new();
    match v {
        Cbor::Int(i) if *i >= 0 => head(&mut out, 0, *i as u64),
        Cbor::Int(i) => head(&mut out, 1, (-1 - *i) as u64),
        Cbor::Bytes(b) => {
            head(&mut out, 2, b.len() as u64);
            out.extend(b);
        }
        Cbor::Text(t) => {
            head(&mut out, 3, t.len() as u64);
            out.extend(t.as_bytes());
        }
        Cbor::Array(a) => {
            head(&mut out, 4, a.len() as u64);
            for x in a {
                out.extend(encode(x));
            }
        }
        Cbor::Map(m) => {
            head(&mut out, 5, m.len() as u64);
            for (k, x) in m {
                out.extend(encode(k));
                out.extend(encode(x));
            }
        }
        Cbor::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Cbor::Null => out.push(0xf6),
        Cbor::Other => out.push(0xf7),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_length() {
        let v = Cbor::Map(vec![
            (Cbor::Int(1), Cbor::Int(2)),
            (Cbor::Int(-7), Cbor::Bytes(vec![1, 2, 3])),
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (
                Cbor::Int(300),
                Cbor::Array(vec![Cbor::Bool(true), Cbor::Null]),
            ),
        ]);
        let mut bytes = encode(&v);
        let used = bytes.len();
        bytes.extend([0xa0]);
        assert_eq!(decode(&bytes).unwrap(), (v, used));
    }

    #[test]
    fn integers_beyond_32_bits_round_trip() {
        // The encoder once wrote every value above 0xffff as 32 bits (found by the `webauthn`
        // fuzz target's round-trip property).
        for i in [
            1i128 << 32,
            u64::MAX as i128,
            -1 - u64::MAX as i128,
            65_536,
            -65_537,
        ] {
            let bytes = encode(&Cbor::Int(i));
            assert_eq!(decode(&bytes), Ok((Cbor::Int(i), bytes.len())), "{i}");
        }
    }

    #[test]
    fn hostile_input_fails_cleanly() {
        for bad in [
            &[0x5a, 0xff, 0xff, 0xff, 0xff][..],
            &[0x9f],
            &[0x81; 64],
            &[0x19, 0x01],
            &[],
        ] {
            assert_eq!(decode(bad), Err(CborError), "{bad:?}");
        }
    }

    /// Declared-count bomb (the review's I2; CWE-789): 16 nested containers, each declaring
    /// as many items as there are bytes left, then a byte that is no item. Nothing may be
    /// reserved for items that were only declared: at most 64 per container.
    #[test]
    fn declared_counts_reserve_little() {
        const BODY: usize = 64 * 1024;
        let mut input = Vec::with_capacity(BODY);
        for level in 0..16 {
            // Arrays of 65436 items, and maps of 32718 entries (two bytes each at least).
            if level % 2 == 0 {
                input.extend([0x99, 0xff, 0x9c]);
            } else {
                input.extend([0xb9, 0x7f, 0xce]);
            }
        }
        input.resize(BODY, 0xff);
        RESERVED.with(|r| r.set(0));
        assert_eq!(decode(&input), Err(CborError));
        let reserved = RESERVED.with(std::cell::Cell::get);
        assert!(
            reserved <= 16 * MAX_PREALLOC,
            "{reserved} items reserved ahead for a {BODY}-byte input"
        );
    }
}
