//! [`Claims`] in the process: the Redis scripts' contract over a map, for a pipeline that is
//! the only one posting (the all-in-one stack). Leases and TTLs run on tokio's clock.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::{Claim, Claims};

/// What a DevLake id is held as.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    /// Claimed by an owner with a fencing token.
    Claimed { token: i64, owner: String },
    /// Sent by an owner.
    Sent(String),
}

#[derive(Default)]
struct State {
    /// Each id's entry and when it lapses.
    ids: HashMap<String, (Entry, Instant)>,
    /// The last fencing token handed out.
    fence: i64,
}

impl State {
    /// The live entry of `id`, forgetting a lapsed one.
    fn live(&mut self, id: &str, now: Instant) -> Option<Entry> {
        match self.ids.get(id) {
            Some((entry, until)) if *until > now => Some(entry.clone()),
            Some(_) => {
                self.ids.remove(id);
                None
            }
            None => None,
        }
    }
}

/// Claims in this process; sent marks live `ttl`, claims `lease`.
pub struct LocalClaims {
    state: Mutex<State>,
    ttl: Duration,
    lease: Duration,
}

impl LocalClaims {
    /// Empty claims; sent marks live `ttl`, claims `lease`.
    pub fn new(ttl: Duration, lease: Duration) -> Self {
        Self { state: Mutex::default(), ttl, lease }
    }

    fn claim_now(&self, devlake_id: &str, owner: &str) -> Claim {
        let now = Instant::now();
        let mut state = self.state.lock().expect("claims lock");
        match state.live(devlake_id, now) {
            Some(Entry::Claimed { token, owner: by }) if by == owner => {
                state.ids.insert(devlake_id.to_owned(), (Entry::Claimed { token, owner: by }, now + self.lease));
                Claim::Won(token)
            }
            Some(Entry::Claimed { owner: by, .. }) => Claim::Held(by),
            Some(Entry::Sent(by)) => Claim::Sent(by),
            None => {
                state.fence += 1;
                let token = state.fence;
                state.ids.insert(
                    devlake_id.to_owned(),
                    (Entry::Claimed { token, owner: owner.to_owned() }, now + self.lease),
                );
                Claim::Won(token)
            }
        }
    }

    fn mark_sent_now(&self, devlake_id: &str, owner: &str, token: i64) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock().expect("claims lock");
        let current = match state.live(devlake_id, now) {
            None => true,
            Some(Entry::Claimed { token: t, owner: by }) => t == token && by == owner,
            Some(Entry::Sent(by)) => by == owner,
        };
        if current {
            state.ids.insert(devlake_id.to_owned(), (Entry::Sent(owner.to_owned()), now + self.ttl));
        }
        current
    }

    fn release_now(&self, devlake_id: &str, owner: &str, token: i64) {
        let now = Instant::now();
        let mut state = self.state.lock().expect("claims lock");
        if state.live(devlake_id, now) == Some(Entry::Claimed { token, owner: owner.to_owned() }) {
            state.ids.remove(devlake_id);
        }
    }
}

impl Claims for LocalClaims {
    fn claim<'a>(&'a self, devlake_id: &'a str, owner: &'a str) -> BoxFuture<'a, Result<Claim, String>> {
        Box::pin(std::future::ready(Ok(self.claim_now(devlake_id, owner))))
    }

    fn mark_sent<'a>(&'a self, devlake_id: &'a str, owner: &'a str, token: i64) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(std::future::ready(Ok(self.mark_sent_now(devlake_id, owner, token))))
    }

    fn release<'a>(&'a self, devlake_id: &'a str, owner: &'a str, token: i64) -> BoxFuture<'a, Result<(), String>> {
        self.release_now(devlake_id, owner, token);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(60);
    const TTL: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn one_owner_wins_a_deployment_claimed_twice() {
        let claims = LocalClaims::new(TTL, LEASE);
        let Claim::Won(token) = claims.claim("dl-1", "a").await.unwrap() else { panic!("the first claim wins") };
        assert_eq!(claims.claim("dl-1", "b").await.unwrap(), Claim::Held("a".into()));
        // The holder claiming again renews its claim with the same token.
        assert_eq!(claims.claim("dl-1", "a").await.unwrap(), Claim::Won(token));
        assert!(claims.mark_sent("dl-1", "a", token).await.unwrap());
        assert_eq!(claims.claim("dl-1", "b").await.unwrap(), Claim::Sent("a".into()));
        // Another id is independent, with a newer token.
        assert!(matches!(claims.claim("dl-2", "b").await.unwrap(), Claim::Won(t) if t > token));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_holder_is_fenced_off_after_its_lease_lapsed_and_was_taken_over() {
        let claims = LocalClaims::new(TTL, LEASE);
        let Claim::Won(stale) = claims.claim("dl-1", "a").await.unwrap() else { panic!("a wins") };
        tokio::time::advance(LEASE + Duration::from_millis(1)).await;
        let Claim::Won(fresh) = claims.claim("dl-1", "b").await.unwrap() else { panic!("b takes the lapsed claim") };
        assert!(fresh > stale);
        // a's post went through late: its mark and its release must not touch b's claim.
        assert!(!claims.mark_sent("dl-1", "a", stale).await.unwrap());
        claims.release("dl-1", "a", stale).await.unwrap();
        assert_eq!(claims.claim("dl-1", "c").await.unwrap(), Claim::Held("b".into()));
        // b's own token, even with b's name, must be the current one.
        assert!(!claims.mark_sent("dl-1", "b", stale).await.unwrap());
        assert!(claims.mark_sent("dl-1", "b", fresh).await.unwrap());
        assert_eq!(claims.claim("dl-1", "a").await.unwrap(), Claim::Sent("b".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn claims_and_sent_marks_expire_after_their_ttl() {
        let claims = LocalClaims::new(TTL, LEASE);
        let Claim::Won(token) = claims.claim("dl-1", "a").await.unwrap() else { panic!("a wins") };
        tokio::time::advance(LEASE - Duration::from_millis(1)).await;
        assert_eq!(claims.claim("dl-1", "b").await.unwrap(), Claim::Held("a".into()), "live until the lease ends");
        // A lapsed claim nobody took may still be marked by its holder, as in Redis.
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(claims.mark_sent("dl-1", "a", token).await.unwrap());
        tokio::time::advance(TTL - Duration::from_millis(1)).await;
        assert_eq!(claims.claim("dl-1", "b").await.unwrap(), Claim::Sent("a".into()));
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(matches!(claims.claim("dl-1", "b").await.unwrap(), Claim::Won(_)), "the sent mark lapsed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_claim_is_free_for_another_owner() {
        let claims = LocalClaims::new(TTL, LEASE);
        let Claim::Won(token) = claims.claim("dl-1", "a").await.unwrap() else { panic!("a wins") };
        claims.release("dl-1", "a", token).await.unwrap();
        assert!(matches!(claims.claim("dl-1", "b").await.unwrap(), Claim::Won(t) if t > token));
    }
}
