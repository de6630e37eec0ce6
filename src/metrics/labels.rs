//! Capped label values: producer-chosen values (event types, sources,
//! error codes) keep a series of their own for the first
//! [`MAX_LABEL_VALUES`] values seen; the rest share [`OTHER`].
//!
//! Locking: the `RwLock` is held for one map lookup (a write only to admit
//! a new value), never across an await.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use super::{MAX_LABEL_VALUES, NO_SOURCE, OTHER};

/// Longer label values are never admitted (they go to [`OTHER`]).
const MAX_LABEL_BYTES: usize = 128;

/// Interned label values, at most [`MAX_LABEL_VALUES`]: the first values
/// seen keep their own series, the rest share [`OTHER`] (so do empty values
/// and values over 128 bytes, which valid events never carry). A value
/// equal to a synthetic one ([`OTHER`], [`NO_SOURCE`]) is that value's
/// series and takes no slot. Resolving a known value is one read-locked
/// lookup and an `Arc` clone.
pub(super) struct Capped {
    values: RwLock<HashSet<Arc<str>>>,
    /// [`OTHER`] then [`NO_SOURCE`]: shared, never admitted.
    synthetic: [Arc<str>; 2],
    /// Most values admitted.
    max: usize,
}

impl Capped {
    pub(super) fn new() -> Self {
        Self::with_max(MAX_LABEL_VALUES)
    }

    /// A table admitting `max` values (route templates: bounded by the
    /// router already, so the cap is only a guard).
    pub(super) fn with_max(max: usize) -> Self {
        Self {
            values: RwLock::new(HashSet::new()),
            synthetic: [OTHER.into(), NO_SOURCE.into()],
            max,
        }
    }

    /// The value's series when resolving it would admit nothing new: the
    /// interned value, a synthetic one, or [`OTHER`] (full, empty, too
    /// long). `None`: [`Capped::resolve`] would admit it now.
    pub(super) fn known(&self, value: &str) -> Option<Arc<str>> {
        if let Some(v) = self.synthetic.iter().find(|s| ***s == *value) {
            return Some(v.clone());
        }
        let values = self.values.read().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = values.get(value) {
            return Some(v.clone());
        }
        if values.len() >= self.max || value.is_empty() || value.len() > MAX_LABEL_BYTES {
            return Some(self.synthetic[0].clone());
        }
        None
    }

    pub(super) fn resolve(&self, value: &str) -> Arc<str> {
        if let Some(v) = self.known(value) {
            return v;
        }
        let mut values = self.values.write().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = values.get(value) {
            return v.clone();
        }
        if values.len() >= self.max {
            return self.synthetic[0].clone();
        }
        let v: Arc<str> = value.into();
        values.insert(v.clone());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_labels_keep_the_first_values_and_pool_the_rest() {
        let c = Capped::new();
        let first = c.resolve("t0");
        assert!(Arc::ptr_eq(&first, &c.resolve("t0")));
        for i in 1..MAX_LABEL_VALUES {
            assert_eq!(&*c.resolve(&format!("t{i}")), format!("t{i}"));
        }
        assert_eq!(&*c.resolve("one too many"), OTHER);
        assert_eq!(&*c.resolve("t5"), "t5");
        assert_eq!(&*Capped::new().resolve(&"x".repeat(200)), OTHER);
    }

    #[test]
    fn synthetic_values_take_no_slot_and_stay_one_series() {
        let c = Capped::with_max(1);
        assert_eq!(&*c.resolve(OTHER), OTHER);
        assert_eq!(&*c.resolve(NO_SOURCE), NO_SOURCE);
        assert!(c.known("t").is_none(), "the slot is still free");
        assert_eq!(&*c.resolve("t"), "t");
        assert_eq!(c.known("u").as_deref(), Some(OTHER));
    }
}
