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
