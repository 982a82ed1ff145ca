//! Structured edits to genuine inputs, shared by the targets that start from one.

/// Edits (4 bytes each) to `v`: bit flips, byte changes, deletions, insertions, truncation.
pub fn edit(mut v: Vec<u8>, ops: &[u8]) -> Vec<u8> {
    for op in ops.chunks_exact(4) {
        let at = usize::from(u16::from_be_bytes([op[1], op[2]]));
        let b = op[3];
        match op[0] % 5 {
            0 if !v.is_empty() => {
                let i = at % v.len();
                v[i] ^= 1 << (b % 8);
            }
            1 if !v.is_empty() => {
                let i = at % v.len();
                v[i] = b;
            }
            2 if !v.is_empty() => {
                v.remove(at % v.len());
            }
            3 => {
                let i = at % (v.len() + 1);
                v.insert(i, b);
            }
            4 => v.truncate(at % (v.len() + 1)),
            _ => {}
        }
    }
    v
}
