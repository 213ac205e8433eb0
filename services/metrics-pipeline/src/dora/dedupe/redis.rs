//! [`Claims`] in Redis: exactly-once DevLake delivery across pipelines that do not share a
//! database (two clusters, each with its own pipeline, seeing the same revision of a
//! component).
//!
//! Before posting, a pipeline claims the DevLake id: `SET <prefix>:devlake:<id>` to
//! `claim:<token>:<owner>` with a lease, where the token comes from `INCR <prefix>:fence` (a
//! fencing token: a claim that lapsed and was taken over can no longer mark the id sent). The
//! id is marked `sent:<owner>` with a TTL (30 days by default) only by the holder of the
//! current claim, after DevLake accepted it. Anyone finding `sent:` skips the post; anyone
//! finding another's claim waits. Every step is one Lua script, so it is atomic in Redis.
//!
//! Redis unreachable means no claim, so no post: delivery waits for Redis and never goes
//! ahead unchecked. Redis must keep its keys over a restart (AOF) for this to hold across one.

use std::time::Duration;

use futures::future::BoxFuture;
use redis::{Script, aio::MultiplexedConnection};

use super::{Claim, Claims};

const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v then
  local token, owner = string.match(v, '^claim:(%d+):(.*)$')
  if token and owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 'won:' .. token
  end
  return v
end
local t = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], 'claim:' .. t .. ':' .. ARGV[1], 'PX', ARGV[2])
return 'won:' .. t
";

const MARK_SENT: &str = r"
local v = redis.call('GET', KEYS[1])
if (not v) or v == ('claim:' .. ARGV[1] .. ':' .. ARGV[2]) or v == ('sent:' .. ARGV[2]) then
  redis.call('SET', KEYS[1], 'sent:' .. ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ('claim:' .. ARGV[1] .. ':' .. ARGV[2]) then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Claims in one Redis.
pub struct RedisClaims {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    prefix: String,
    ttl: Duration,
    lease: Duration,
    timeout: Duration,
}

impl RedisClaims {
    /// Claims in the Redis at `url` under `prefix`; sent marks live `ttl`, claims `lease`.
    pub fn new(url: &str, prefix: &str, ttl: Duration, lease: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis URL: {e}"))?;
        Ok(Self {
            client,
            conn: tokio::sync::Mutex::default(),
            prefix: prefix.to_owned(),
            ttl,
            lease,
            timeout: Duration::from_secs(5),
        })
    }

    fn key(&self, devlake_id: &str) -> [String; 2] {
        [format!("{}:devlake:{devlake_id}", self.prefix), format!("{}:fence", self.prefix)]
    }

    async fn run<T: redis::FromRedisValue>(&self, script: &str, keys: &[String], args: &[String]) -> Result<T, String> {
        let mut slot = self.conn.lock().await;
        let conn = match slot.as_mut() {
            Some(c) => c,
            None => {
                let c = tokio::time::timeout(self.timeout, self.client.get_multiplexed_async_connection())
                    .await
                    .map_err(|_| "redis: no connection in 5 s".to_owned())?
                    .map_err(|e| format!("redis: {e}"))?;
                slot.insert(c)
            }
        };
        let script = Script::new(script);
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(k);
        }
        for a in args {
            invocation.arg(a);
        }
        let result = tokio::time::timeout(self.timeout, invocation.invoke_async(conn)).await;
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                *slot = None;
                Err(format!("redis: {e}"))
            }
            Err(_) => {
                *slot = None;
                Err("redis: no answer in 5 s".into())
            }
        }
    }

    /// Claims `devlake_id` for `owner`.
    async fn claim_now(&self, devlake_id: &str, owner: &str) -> Result<Claim, String> {
        let keys = self.key(devlake_id);
        let v: String = self.run(CLAIM, &keys, &[owner.to_owned(), self.lease.as_millis().to_string()]).await?;
        if let Some(token) = v.strip_prefix("won:") {
            return token.parse().map(Claim::Won).map_err(|_| format!("redis: odd claim answer {v:?}"));
        }
        if let Some(by) = v.strip_prefix("sent:") {
            return Ok(Claim::Sent(by.to_owned()));
        }
        let holder = v.strip_prefix("claim:").and_then(|r| r.split_once(':')).map_or(v.as_str(), |(_, o)| o);
        Ok(Claim::Held(holder.to_owned()))
    }

    /// Marks `devlake_id` sent by `owner` if its claim `token` is still the current one (or the
    /// claim lapsed and nobody took it); `Ok(false)` when another owner's claim superseded it.
    async fn mark_sent_now(&self, devlake_id: &str, owner: &str, token: i64) -> Result<bool, String> {
        let keys = self.key(devlake_id);
        let args = [token.to_string(), owner.to_owned(), self.ttl.as_millis().to_string()];
        let marked: i64 = self.run(MARK_SENT, &keys[..1], &args).await?;
        Ok(marked == 1)
    }

    /// Gives up a claim (the post failed for good), so another owner may try.
    async fn release_now(&self, devlake_id: &str, owner: &str, token: i64) -> Result<(), String> {
        let keys = self.key(devlake_id);
        let _: i64 = self.run(RELEASE, &keys[..1], &[token.to_string(), owner.to_owned()]).await?;
        Ok(())
    }
}

impl Claims for RedisClaims {
    fn claim<'a>(&'a self, devlake_id: &'a str, owner: &'a str) -> BoxFuture<'a, Result<Claim, String>> {
        Box::pin(self.claim_now(devlake_id, owner))
    }

    fn mark_sent<'a>(&'a self, devlake_id: &'a str, owner: &'a str, token: i64) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(self.mark_sent_now(devlake_id, owner, token))
    }

    fn release<'a>(&'a self, devlake_id: &'a str, owner: &'a str, token: i64) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.release_now(devlake_id, owner, token))
    }
}
