//! HTTP caching: entity tags from content, conditional answers (`If-None-Match` -> 304),
//! and an in-memory cache of study pixels, which never change once a study is stored,
//! so a page view of a known study reads no blob from the database.

use crate::engine::{fnv1a, FNV_OFFSET};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Mutex;

/// A strong entity tag of `body`: its content fingerprint, quoted.
pub fn etag_of(body: &[u8]) -> String {
    format!("\"{:016x}\"", fnv1a(body, FNV_OFFSET))
}

/// Whether the request's `If-None-Match` names `etag` (or is `*`).
fn not_modified(req: &HeaderMap, etag: &str) -> bool {
    req.get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// `body` with its entity tag, or an empty 304 when the client already holds it.
pub fn conditional(
    req: &HeaderMap,
    etag: &str,
    content_type: &'static str,
    cache_control: &'static str,
    body: Bytes,
) -> Response {
    let tag = HeaderValue::from_str(etag).expect("an entity tag is hex in quotes");
    let cc = (header::CACHE_CONTROL, cache_control);
    if not_modified(req, etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)], [cc]).into_response();
    }
    (
        [(header::ETAG, tag)],
        [cc, (header::CONTENT_TYPE, content_type)],
        body,
    )
        .into_response()
}

/// A cached body with its entity tag; cloning shares the bytes.
#[derive(Clone)]
pub struct Entry {
    pub body: Bytes,
    pub etag: String,
}

/// Bodies by id (a study's pixels, a latent's feature page), least recently used evicted
/// beyond a byte budget.
pub struct BlobCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<i64, (Entry, u64)>,
    bytes: usize,
    clock: u64,
}

impl BlobCache {
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::default(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // the map is consistent between statements, so a poisoned lock is usable
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: i64) -> Option<Entry> {
        let mut g = self.inner();
        g.clock += 1;
        let now = g.clock;
        g.entries.get_mut(&id).map(|(e, used)| {
            *used = now;
            e.clone()
        })
    }

    /// Keep `body` for `id` (unless it alone exceeds the budget) and return it tagged.
    pub fn insert(&self, id: i64, body: Bytes) -> Entry {
        let entry = Entry {
            etag: etag_of(&body),
            body,
        };
        let size = entry.body.len();
        if size > self.budget {
            return entry;
        }
        let mut g = self.inner();
        g.clock += 1;
        let now = g.clock;
        if let Some((old, _)) = g.entries.insert(id, (entry.clone(), now)) {
            g.bytes -= old.body.len();
        }
        g.bytes += size;
        while g.bytes > self.budget {
            let oldest = g
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
                .expect("over budget means some entry is kept");
            let (gone, _) = g.entries.remove(&oldest).expect("the key was just found");
            g.bytes -= gone.body.len();
        }
        entry
    }

    /// Forget every body (what they were made from has changed).
    pub fn clear(&self) {
        let mut g = self.inner();
        g.entries.clear();
        g.bytes = 0;
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize, v: u8) -> Bytes {
        Bytes::from(vec![v; n])
    }

    #[test]
    fn evicts_the_least_recently_used_beyond_the_budget() {
        let c = BlobCache::new(10);
        c.insert(1, body(4, 1));
        c.insert(2, body(4, 2));
        assert!(c.get(1).is_some()); // 2 is now the least recently used
        c.insert(3, body(4, 3));
        assert!(c.get(2).is_none());
        assert!(c.get(1).is_some() && c.get(3).is_some());
        assert_eq!(c.bytes(), 8);
        // replacing an entry counts its new size only
        c.insert(3, body(2, 3));
        assert_eq!(c.bytes(), 6);
        // a body over the whole budget is returned but not kept
        let e = c.insert(4, body(11, 4));
        assert_eq!(e.body.len(), 11);
        assert!(c.get(4).is_none());
        assert_eq!(c.bytes(), 6);
    }

    #[test]
    fn tags_follow_content_and_if_none_match_lists_are_understood() {
        let (a, b) = (etag_of(b"abc"), etag_of(b"abd"));
        assert_ne!(a, b);
        assert_eq!(a, etag_of(b"abc"));
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(not_modified(&h(&a), &a));
        assert!(not_modified(&h(&format!("{b}, W/{a}")), &a));
        assert!(not_modified(&h("*"), &a));
        assert!(!not_modified(&h(&b), &a));
        assert!(!not_modified(&HeaderMap::new(), &a));
        let r = conditional(&h(&a), &a, "text/plain", "no-cache", Bytes::from("abc"));
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let r = conditional(&h(&b), &a, "text/plain", "no-cache", Bytes::from("abc"));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::ETAG], a.as_str());
    }
}
