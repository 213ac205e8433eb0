//! Leader election on a `coordination.k8s.io/v1` Lease, decided as a pure function of the
//! Lease as read, who we are and the time. The elector writes the decision with optimistic
//! concurrency (the read's resourceVersion), so of two replicas deciding at once only one
//! write lands.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// What the elector read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseView {
    /// `spec.holderIdentity`; empty when released.
    pub holder: String,
    /// `spec.renewTime`.
    pub renewed: Option<Timestamp>,
    /// `spec.leaseDurationSeconds`.
    pub duration_seconds: i32,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Take the Lease (nobody holds it, or the holder let it expire).
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds it until then.
    Follow {
        /// The holder.
        holder: String,
        /// When its hold runs out unless renewed.
        until: Timestamp,
    },
}

/// Decides from `lease` (`None`: no Lease yet) for `me` at `now`. A holder whose renewal is
/// older than the lease duration has lost it; a Lease without a renew time counts as expired.
pub fn decide(lease: Option<&LeaseView>, me: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else { return Decision::Acquire };
    if lease.holder.is_empty() {
        return Decision::Acquire;
    }
    if lease.holder == me {
        return Decision::Renew;
    }
    let Some(renewed) = lease.renewed else { return Decision::Acquire };
    let until =
        renewed.saturating_add(SignedDuration::from_secs(i64::from(lease.duration_seconds.max(1)))).unwrap_or(renewed);
    if until <= now {
        return Decision::Acquire;
    }
    Decision::Follow { holder: lease.holder.clone(), until }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn held(by: &str, renewed: &str) -> LeaseView {
        LeaseView { holder: by.into(), renewed: Some(at(renewed)), duration_seconds: 15 }
    }

    #[test]
    fn nobody_holds_it() {
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(decide(None, "a", now), Decision::Acquire);
        assert_eq!(decide(Some(&LeaseView::default()), "a", now), Decision::Acquire, "released");
    }

    #[test]
    fn the_holder_renews_even_late() {
        assert_eq!(decide(Some(&held("a", "2026-01-01T00:00:00Z")), "a", at("2026-01-01T01:00:00Z")), Decision::Renew);
    }

    #[test]
    fn another_holder_is_followed_until_its_lease_runs_out() {
        let lease = held("b", "2026-01-01T00:00:00Z");
        assert_eq!(
            decide(Some(&lease), "a", at("2026-01-01T00:00:14Z")),
            Decision::Follow { holder: "b".into(), until: at("2026-01-01T00:00:15Z") }
        );
        assert_eq!(decide(Some(&lease), "a", at("2026-01-01T00:00:15Z")), Decision::Acquire);
        let never_renewed = LeaseView { holder: "b".into(), renewed: None, duration_seconds: 15 };
        assert_eq!(decide(Some(&never_renewed), "a", at("2026-01-01T00:00:00Z")), Decision::Acquire);
    }
}
