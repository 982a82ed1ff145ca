//! A bounded cache from a session cookie's exact text to what was derived from it (the opened
//! session, its identity header values, its signed JWT). It turns the per-request cost of a
//! known session into a lookup: no base64, no AES-GCM, no JSON, no ECDSA.
//!
//! Safety: an entry is returned only when the cookie text is byte-for-byte the one that was
//! opened and verified; the short key only picks the bucket. Expiry is still checked by the
//! caller on every hit, from the sealed value's own times.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;

const SHARDS: usize = 16;

struct Entry<V> {
    text: Box<[u8]>,
    value: Arc<V>,
}

/// Cookie text → derived value, bounded to `capacity` entries.
pub struct SessionCache<V> {
    shards: Vec<Mutex<HashMap<u64, Entry<V>>>>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl<V> SessionCache<V> {
    pub fn new(capacity: usize) -> Self {
        SessionCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: (capacity / SHARDS).max(1),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The tail of the text is the AEAD tag: unpredictable, so a cheap and even bucket key.
    fn key(&self, b: &[u8]) -> u64 {
        let tail = &b[b.len().saturating_sub(24)..];
        let mut h = self.hasher.build_hasher();
        h.write(tail);
        h.write_usize(b.len());
        h.finish()
    }

    pub fn get(&self, text: &(impl AsRef<[u8]> + ?Sized)) -> Option<Arc<V>> {
        let text = text.as_ref();
        let k = self.key(text);
        let shard = self.shards[(k as usize) % SHARDS].lock();
        let e = shard.get(&k)?;
        (&*e.text == text).then(|| e.value.clone())
    }

    pub fn insert(&self, text: &(impl AsRef<[u8]> + ?Sized), value: Arc<V>) {
        let text = text.as_ref();
        let k = self.key(text);
        let mut shard = self.shards[(k as usize) % SHARDS].lock();
        if shard.len() >= self.per_shard {
            // Bounded memory: drop the whole bucket set; hot sessions are re-derived once.
            shard.clear();
        }
        shard.insert(
            k,
            Entry {
                text: text.into(),
                value,
            },
        );
    }

    pub fn remove(&self, text: &(impl AsRef<[u8]> + ?Sized)) {
        let k = self.key(text.as_ref());
        self.shards[(k as usize) % SHARDS].lock().remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_only_exact_text_and_stays_bounded() {
        let c: SessionCache<u32> = SessionCache::new(32);
        c.insert("aaaa-session-text", Arc::new(1));
        assert_eq!(c.get("aaaa-session-text").as_deref(), Some(&1));
        assert!(c.get("aaab-session-text").is_none());
        for i in 0..10_000 {
            c.insert(&format!("text-{i}"), Arc::new(i));
        }
        let total: usize = c.shards.iter().map(|s| s.lock().len()).sum();
        assert!(total <= 32, "{total}");
    }
}
