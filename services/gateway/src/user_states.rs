//! A short-lived, bounded cache of what access-token checks need to know about a user: their
//! current token version and whether they are enabled. It keeps the store off the path of most
//! calls while bounding how long another replica's change can go unseen to its time to live;
//! changes made through this gateway forget the entry at once.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::time::Instant;

/// How many users the cache holds at most.
pub const CAPACITY: usize = 10_000;

/// What a token check needs to know about a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserState {
    /// The version every valid access token of the user carries.
    pub token_version: i64,
    /// Whether the user may act at all.
    pub enabled: bool,
}

/// Users' states by id, each kept for at most the time to live; `None` records a user that does
/// not exist (deleted).
#[derive(Debug)]
pub struct UserStates {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Instant, Option<UserState>)>>,
}

impl UserStates {
    /// Returns an empty cache whose entries live `ttl`, holding at most `capacity` users.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, capacity: capacity.max(1), entries: Mutex::new(HashMap::new()) }
    }

    /// Returns the cached state of `user_id`, or `None` when it is not cached or too old.
    pub fn get(&self, user_id: &str) -> Option<Option<UserState>> {
        let entries = self.entries.lock().expect("user state lock");
        entries.get(user_id).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, state)| *state)
    }

    /// Records the state of `user_id` as just read from the store.
    pub fn put(&self, user_id: &str, state: Option<UserState>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().expect("user state lock");
        if entries.len() >= self.capacity && !entries.contains_key(user_id) {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if entries.len() >= self.capacity {
                // Still full of live entries: start over rather than track recency; the cost is
                // one store read per active user.
                entries.clear();
            }
        }
        entries.insert(user_id.to_owned(), (Instant::now(), state));
    }

    /// Drops what is known of `user_id`, after this gateway changed or deleted them.
    pub fn forget(&self, user_id: &str) {
        self.entries.lock().expect("user state lock").remove(user_id);
    }

    /// Returns how many users are cached.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("user state lock").len()
    }

    /// Returns whether no user is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: Option<UserState> = Some(UserState { token_version: 3, enabled: true });

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_their_time_to_live() {
        let cache = UserStates::new(Duration::from_secs(2), 10);
        assert_eq!(cache.get("u1"), None);
        cache.put("u1", LIVE);
        cache.put("gone", None);
        assert_eq!(cache.get("u1"), Some(LIVE));
        assert_eq!(cache.get("gone"), Some(None), "a deleted user is cached as such");
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert_eq!(cache.get("u1"), Some(LIVE));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(cache.get("u1"), None, "a change elsewhere is seen within the time to live");
    }

    #[tokio::test(start_paused = true)]
    async fn forget_drops_an_entry_at_once() {
        let cache = UserStates::new(Duration::from_secs(2), 10);
        cache.put("u1", LIVE);
        cache.forget("u1");
        assert_eq!(cache.get("u1"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_never_grows_past_its_capacity() {
        let cache = UserStates::new(Duration::from_secs(2), 3);
        for i in 0..3 {
            cache.put(&format!("u{i}"), LIVE);
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        cache.put("u0", LIVE);
        assert_eq!(cache.len(), 3, "refreshing a cached user takes no room");
        tokio::time::advance(Duration::from_secs(1)).await;
        // u1 and u2 have expired and make room; u0 is still live.
        cache.put("u3", LIVE);
        assert_eq!(cache.len(), 2);
        cache.put("u4", LIVE);
        cache.put("u5", LIVE);
        assert!(cache.len() <= 3, "{}", cache.len());
        assert_eq!(cache.get("u5"), Some(LIVE));
    }

    #[test]
    fn a_zero_time_to_live_caches_nothing() {
        let cache = UserStates::new(Duration::ZERO, 10);
        cache.put("u1", LIVE);
        assert!(cache.is_empty());
    }
}
