//! Claims on DevLake ids, so a deployment that several pipelines (or one pipeline's worker
//! passes) see is posted once: a claim with a lease and a fencing token, and a sent marker
//! with a TTL that only the holder of the current claim may set.
//!
//! [`RedisClaims`] holds them in Redis, shared by pipelines with their own databases;
//! [`LocalClaims`] holds them in the process, for the single-process stack on SQLite, where no
//! other pipeline can post the same id.

mod local;
mod redis;

use futures::future::BoxFuture;

use crate::db::Db;

pub use self::{local::LocalClaims, redis::RedisClaims};

/// What a claim came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This owner holds the id with this fencing token and may post.
    Won(i64),
    /// DevLake has it already, sent by this owner.
    Sent(String),
    /// Another owner holds a live claim.
    Held(String),
}

/// The contract of a claim store. Errors are messages for the push's `last_error`: a claim
/// that cannot be checked is not taken, so nothing is posted unchecked.
pub trait Claims: Send + Sync {
    /// Claims `devlake_id` for `owner`: won with a fresh fencing token when nobody holds it
    /// (the owner's own live claim is renewed, same token), else who sent or holds it.
    fn claim<'a>(&'a self, devlake_id: &'a str, owner: &'a str) -> BoxFuture<'a, Result<Claim, String>>;

    /// Marks `devlake_id` sent by `owner` if its claim `token` is still the current one (or the
    /// claim lapsed and nobody took it); `Ok(false)` when another owner's claim superseded it.
    fn mark_sent<'a>(&'a self, devlake_id: &'a str, owner: &'a str, token: i64) -> BoxFuture<'a, Result<bool, String>>;

    /// Gives up a claim (the post failed for good), so another owner may try; a claim no
    /// longer held with `token` is left alone.
    fn release<'a>(&'a self, devlake_id: &'a str, owner: &'a str, token: i64) -> BoxFuture<'a, Result<(), String>>;
}

/// The claims a pipeline on `db` uses: Redis when `--redis-url` is set; in the process on
/// SQLite (one pipeline in one process); none on PostgreSQL without Redis (the database's own
/// claims serve replicas sharing it).
pub fn choose(options: &super::Options, db: &Db) -> Result<Option<Box<dyn Claims>>, String> {
    Ok(match (&options.redis_url, db) {
        (Some(url), _) => Some(Box::new(RedisClaims::new(
            url.expose(),
            &options.redis_prefix,
            options.dedupe_ttl,
            options.claim_lease,
        )?)),
        (None, Db::Sqlite(_)) => Some(Box::new(LocalClaims::new(options.dedupe_ttl, options.claim_lease))),
        (None, Db::Postgres(_)) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dora::Options;

    #[tokio::test]
    async fn sqlite_without_redis_claims_in_the_process_and_postgres_in_its_database() {
        let sqlite = Db::connect("sqlite::memory:", 1, "metrics").await.unwrap();
        let postgres = Db::Postgres(sqlx::PgPool::connect_lazy("postgres://127.0.0.1:1/none").unwrap());
        let local = choose(&Options::default(), &sqlite).unwrap().expect("in-process claims on SQLite");
        assert!(matches!(local.claim("dl-1", "a").await.unwrap(), Claim::Won(_)));
        assert_eq!(local.claim("dl-1", "b").await.unwrap(), Claim::Held("a".into()));
        assert!(choose(&Options::default(), &postgres).unwrap().is_none());
        // With a Redis URL the claims are Redis's, on either backend: one that does not answer
        // is an error, never a claim.
        let redis = Options { redis_url: Some("redis://127.0.0.1:1".to_owned().into()), ..Options::default() };
        let remote = choose(&redis, &sqlite).unwrap().expect("Redis claims");
        assert!(remote.claim("dl-1", "a").await.is_err());
        assert!(choose(&redis, &postgres).unwrap().is_some());
    }
}
