//! A least-recently-used cache bounded by bytes, for body results: revisiting an image or
//! switching its class must cost only the head, while browsing thousands of images must not
//! grow memory without bound.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;

/// Entries report their size so the cache can stay under its budget.
pub trait Weighed {
    fn bytes(&self) -> usize;
}

/// LRU cache of `Arc<V>` under a byte budget. Lookups and inserts are O(n) in the number of
/// entries for the recency update, which stays small (tens to hundreds of images).
#[derive(Debug)]
pub struct LruCache<K, V> {
    budget: usize,
    used: usize,
    map: HashMap<K, Arc<V>>,
    order: VecDeque<K>,
}

impl<K: Eq + Hash + Clone, V: Weighed> LruCache<K, V> {
    pub fn new(budget_bytes: usize) -> Self {
        Self { budget: budget_bytes, used: 0, map: HashMap::new(), order: VecDeque::new() }
    }

    pub fn get(&mut self, k: &K) -> Option<Arc<V>> {
        let v = self.map.get(k)?.clone();
        self.touch(k);
        Some(v)
    }

    /// Whether `k` is cached, without changing its recency.
    pub fn contains(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    fn touch(&mut self, k: &K) {
        if let Some(i) = self.order.iter().position(|x| x == k) {
            let key = self.order.remove(i).expect("index in range");
            self.order.push_back(key);
        }
    }

    /// Insert, evicting the least recently used entries beyond the budget (the new entry is
    /// always kept, even if it alone exceeds the budget).
    pub fn insert(&mut self, k: K, v: Arc<V>) {
        if let Some(old) = self.map.remove(&k) {
            self.used -= old.bytes();
            self.order.retain(|x| x != &k);
        }
        self.used += v.bytes();
        self.map.insert(k.clone(), v);
        self.order.push_back(k);
        while self.used > self.budget && self.order.len() > 1 {
            let oldest = self.order.pop_front().expect("non-empty");
            if let Some(v) = self.map.remove(&oldest) {
                self.used -= v.bytes();
            }
        }
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.used = 0;
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn used_bytes(&self) -> usize {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Blob(usize);
    impl Weighed for Blob {
        fn bytes(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn evicts_least_recently_used_beyond_budget() {
        let mut c = LruCache::new(100);
        c.insert("a", Arc::new(Blob(40)));
        c.insert("b", Arc::new(Blob(40)));
        assert!(c.get(&"a").is_some()); // a is now the most recent
        c.insert("c", Arc::new(Blob(40)));
        assert!(c.contains(&"a") && c.contains(&"c") && !c.contains(&"b"));
        assert_eq!(c.used_bytes(), 80);
        c.insert("huge", Arc::new(Blob(500)));
        assert_eq!((c.len(), c.used_bytes()), (1, 500), "an oversized entry is kept alone");
        c.insert("huge", Arc::new(Blob(10)));
        assert_eq!((c.len(), c.used_bytes()), (1, 10), "replacing updates the accounting");
    }
}
