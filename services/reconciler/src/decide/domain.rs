//! Host names, the pure parts: the DNS-safe slug of a git branch, which branches get a
//! preview (Kapsa's include/exclude globs), the label an environment is served under
//! (`api`, `staging.api`, `feature-x.api`), and which base domain of a [`DomainPoolSpec`] that
//! label is allocated on, so that no two environments ever share a host.

use std::collections::BTreeSet;
use std::str::FromStr;

use persys_crds::kapsa::{Allocation, BranchFilter, DomainPoolSpec};

/// The longest slug made from a branch name before a hash is appended, leaving room under
/// the 63 characters of a DNS label for `-<hash>` and a counter.
pub const SLUG_MAX: usize = 40;

/// The longest DNS label.
const LABEL_MAX: usize = 63;

/// The longest host name.
const HOST_MAX: usize = 253;

/// FNV-1a, 64 bits: fixed by its definition, so a slug's hash never changes between runs,
/// machines or Rust versions (unlike `DefaultHasher`).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Returns the DNS-label-safe slug of a git `branch` (`feature/new-api` → `feature-new-api`).
///
/// ASCII letters are lowercased and every other character outside `[a-z0-9]` becomes `-`
/// (ASCII rules only, so the slug does not depend on the Unicode tables of a Rust version);
/// runs of `-` collapse, leading and trailing `-` go, the result is capped at [`SLUG_MAX`]
/// characters, and an empty result is `branch`. When the slug was capped, or another branch
/// already has it (it is in `taken`), `-` and the first six hex digits of a fixed hash of the
/// full branch name are appended, then `-2`, `-3`… until it is free. `taken` holds the slugs
/// of the *other* branches: leave the branch's own slug out of it.
///
/// The result always matches [`persys_crds::kapsa::DNS_LABEL`] and is never in `taken`.
pub fn branch_slug(branch: &str, taken: &BTreeSet<String>) -> String {
    let mut slug = String::with_capacity(branch.len().min(SLUG_MAX + 1));
    for c in branch.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    let capped = slug.len() > SLUG_MAX;
    // Only ASCII is left, so a byte index is a character index.
    let slug = slug.get(..SLUG_MAX).unwrap_or(slug).trim_end_matches('-');
    let slug = if slug.is_empty() { "branch" } else { slug };
    if !capped && !taken.contains(slug) {
        return slug.to_owned();
    }
    let hashed = format!("{slug}-{:06x}", fnv1a64(branch.as_bytes()) >> 40);
    if !taken.contains(&hashed) {
        return hashed;
    }
    let mut n: u64 = 2;
    loop {
        let candidate = format!("{hashed}-{n}");
        if !taken.contains(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

/// One piece of a branch glob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    /// This character.
    Literal(char),
    /// `?`: one character other than `/`.
    One,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**`: any run of characters.
    Globstar,
}

fn tokens(pattern: &str) -> Vec<Token> {
    let mut out = Vec::with_capacity(pattern.len());
    for c in pattern.chars() {
        let token = match c {
            '?' => Token::One,
            '*' => match out.last_mut() {
                // `**`, and a longer run of `*` means the same.
                Some(last @ (Token::Star | Token::Globstar)) => {
                    *last = Token::Globstar;
                    continue;
                }
                _ => Token::Star,
            },
            c => Token::Literal(c),
        };
        out.push(token);
    }
    out
}

/// Returns whether `branch` matches the glob `pattern`: `*` matches any run of characters
/// except `/`, `**` any run including `/`, `?` exactly one character except `/`; every other
/// character matches itself. `feature/*` matches `feature/x` but not `feature/x/y`;
/// `feature/**` matches both; `**` alone matches every branch.
///
/// Runs in O(pattern × branch) time and O(branch) space, whatever the input.
pub fn glob_match(pattern: &str, branch: &str) -> bool {
    let text: Vec<char> = branch.chars().collect();
    // row[j]: the pattern read so far matches the first j characters of the branch.
    let mut row = vec![false; text.len() + 1];
    row[0] = true;
    let mut next = vec![false; text.len() + 1];
    for token in tokens(pattern) {
        next[0] = matches!(token, Token::Star | Token::Globstar) && row[0];
        for (j, &c) in text.iter().enumerate() {
            next[j + 1] = match token {
                Token::Literal(l) => row[j] && c == l,
                Token::One => row[j] && c != '/',
                Token::Star => row[j + 1] || (next[j] && c != '/'),
                Token::Globstar => row[j + 1] || next[j],
            };
        }
        std::mem::swap(&mut row, &mut next);
        if !row.contains(&true) {
            return false;
        }
    }
    row[text.len()]
}

/// Returns whether `branch` gets a preview environment: it matches one of `filter.include`
/// (every branch does when `include` is empty) and none of `filter.exclude`.
pub fn wants_preview(filter: &BranchFilter, branch: &str) -> bool {
    let included = filter.include.is_empty() || filter.include.iter().any(|p| glob_match(p, branch));
    included && !filter.exclude.iter().any(|p| glob_match(p, branch))
}

/// An Environment's `spec.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EnvKind {
    /// A long-lived environment named in the Project (`prod`, `staging`).
    Permanent,
    /// A short-lived environment of a branch.
    Preview,
}

impl EnvKind {
    /// Returns `permanent` or `preview`, as `spec.type` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permanent => "permanent",
            Self::Preview => "preview",
        }
    }
}

impl std::fmt::Display for EnvKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `spec.type` that is neither `permanent` nor `preview`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("environment type `{0}` is unknown; spec.type is `permanent` or `preview`")]
pub struct UnknownEnvKind(pub String);

impl FromStr for EnvKind {
    type Err = UnknownEnvKind;

    /// Reads `permanent` or `preview`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "permanent" => Ok(Self::Permanent),
            "preview" => Ok(Self::Preview),
            other => Err(UnknownEnvKind(other.to_owned())),
        }
    }
}

/// Returns the part of an environment's host before the base domain: `<subdomain>` for the
/// permanent environment `prod`, `<env_name>.<subdomain>` for other permanent environments,
/// `<slug>.<subdomain>` for a preview (its [`branch_slug`]; the environment's name when no
/// slug is given).
pub fn host_label(env_type: EnvKind, env_name: &str, slug: Option<&str>, subdomain: &str) -> String {
    match env_type {
        EnvKind::Permanent if env_name == "prod" => subdomain.to_owned(),
        EnvKind::Permanent => format!("{env_name}.{subdomain}"),
        EnvKind::Preview => format!("{}.{subdomain}", slug.unwrap_or(env_name)),
    }
}

/// Why no host could be allocated. Each message says what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// The pool has no base domain.
    #[error("the DomainPool lists no base domains; add one to its spec.baseDomains")]
    NoBaseDomains,
    /// The label is not a dot-separated list of DNS labels.
    #[error(
        "host label `{label}` is not a dot-separated list of DNS labels (lowercase letters, digits and `-`, \
         starting and ending with a letter or digit); fix spec.domain.subdomain or the environment's name"
    )]
    InvalidLabel {
        /// The label.
        label: String,
    },
    /// A part of the label is one of the pool's reserved subdomains.
    #[error(
        "subdomain `{subdomain}` (of host label `{label}`) is reserved by the DomainPool's \
         spec.allocationPolicy.reservedSubdomains; choose another spec.domain.subdomain (or environment name)"
    )]
    Reserved {
        /// The reserved name.
        subdomain: String,
        /// The whole label.
        label: String,
    },
    /// Every base domain already serves this label for another environment.
    #[error(
        "host `{host}` is already allocated to environment `{by_environment}` of Project `{by_project}`, and so \
         is this label on every other base domain of the DomainPool; choose another spec.domain.subdomain"
    )]
    Taken {
        /// The host on the preferred base domain.
        host: String,
        /// The Project (`namespace/name`) holding it.
        by_project: String,
        /// Its Environment holding it.
        by_environment: String,
    },
    /// The host breaks DNS's length limits on every base domain.
    #[error(
        "host `{host}` is too long ({reason}); shorten spec.domain.subdomain, the environment's name or the branch"
    )]
    TooLong {
        /// The host (or the label, when the label alone is too long).
        host: String,
        /// Which limit.
        reason: String,
    },
}

/// Checks DNS's limits on `host`: 253 characters in all, 63 per label.
fn length_problem(host: &str) -> Option<String> {
    if host.len() > HOST_MAX {
        return Some(format!("{} characters, at most {HOST_MAX} allowed", host.len()));
    }
    host.split('.')
        .find(|l| l.len() > LABEL_MAX)
        .map(|l| format!("its part `{l}` has {} characters, at most {LABEL_MAX} allowed", l.len()))
}

fn is_dns_label(l: &str) -> bool {
    let b = l.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => ok(first) && ok(last) && b.iter().all(|c| ok(c) || *c == b'-'),
        _ => false,
    }
}

/// The pool's base domains in spec order, without blanks and repeats (ignoring case).
fn base_domains(pool: &DomainPoolSpec) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::with_capacity(pool.base_domains.len());
    for b in &pool.base_domains {
        let b = b.trim();
        if !b.is_empty() && !out.iter().any(|o| o.eq_ignore_ascii_case(b)) {
            out.push(b);
        }
    }
    out
}

fn index_of(bases: &[&str], base: &str) -> Option<usize> {
    bases.iter().position(|b| b.eq_ignore_ascii_case(base))
}

/// The base domains in the order they are tried: the project's own base domain first, then
/// the strategy's choice and the rest after it.
fn candidates<'p>(pool: &'p DomainPoolSpec, allocations: &[Allocation], project: &str, pick: u64) -> Vec<&'p str> {
    let bases = base_domains(pool);
    let n = bases.len();
    if n == 0 {
        return bases;
    }
    let mut order: Vec<usize> = match pool.allocation_policy.strategy.as_str() {
        "least-used" => {
            let used = |i: usize| allocations.iter().filter(|a| a.base_domain.eq_ignore_ascii_case(bases[i])).count();
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|&i| (used(i), i));
            order
        }
        strategy => {
            let start = if strategy == "random" {
                // `n` fits in a u64 and the remainder is below `n`, so neither cast loses anything.
                (pick % n as u64) as usize
            } else {
                allocations.last().and_then(|a| index_of(&bases, &a.base_domain)).map_or(0, |i| (i + 1) % n)
            };
            (start..start + n).map(|i| i % n).collect()
        }
    };
    let own = allocations.iter().filter(|a| a.project == project).find_map(|a| index_of(&bases, &a.base_domain));
    if let Some(own) = own {
        order.retain(|&i| i != own);
        order.insert(0, own);
    }
    order.into_iter().map(|i| bases[i]).collect()
}

/// Returns the host allocation of `environment` of `project` (`namespace/name`) for the host
/// label `label` (see [`host_label`]), given the pool's current `allocations`.
///
/// - An allocation `allocations` already holds for the environment comes back unchanged, so a
///   host never moves, as long as it still fits: same label, base domain still in the pool.
///   Otherwise a new one is made, and the caller replaces the old one with it.
/// - A label whose first part, last part (the one right under the base domain) or whole is in
///   `spec.allocationPolicy.reservedSubdomains` (ignoring case) is refused.
/// - Base domains are tried in turn, starting with the one the project already has an
///   allocation on (its environments share a base domain when they can), else the one the
///   strategy picks: `round-robin` (also for unknown strategies) the one after the base
///   domain of the last element of `allocations`, `least-used` the one with the fewest
///   allocations (ties in spec order), `random` the one at `pick % n`.
/// - A host held by another environment, or breaking DNS's length limits, is skipped.
///
/// The result never shares its (subdomain, base domain) with another environment's
/// allocation.
pub fn allocate(
    pool: &DomainPoolSpec,
    allocations: &[Allocation],
    project: &str,
    environment: &str,
    label: &str,
    pick: u64,
) -> Result<Allocation, AllocationError> {
    let bases = base_domains(pool);
    let mine = |a: &&Allocation| a.project == project && a.environment == environment;
    if let Some(existing) = allocations.iter().find(mine)
        && existing.subdomain == label
        && index_of(&bases, &existing.base_domain).is_some()
    {
        return Ok(existing.clone());
    }
    if bases.is_empty() {
        return Err(AllocationError::NoBaseDomains);
    }
    if let Some(reason) = length_problem(label) {
        return Err(AllocationError::TooLong { host: label.to_owned(), reason });
    }
    if !label.split('.').all(is_dns_label) {
        return Err(AllocationError::InvalidLabel { label: label.to_owned() });
    }
    let parts: Vec<&str> = label.split('.').collect();
    let reserved = [Some(label), parts.first().copied(), parts.last().copied()]
        .into_iter()
        .flatten()
        .find(|part| pool.allocation_policy.reserved_subdomains.iter().any(|r| r.trim().eq_ignore_ascii_case(part)));
    if let Some(subdomain) = reserved {
        return Err(AllocationError::Reserved { subdomain: subdomain.to_owned(), label: label.to_owned() });
    }
    // A conflict says more than a length limit: report the first conflict met, else the first
    // length problem.
    let (mut taken, mut too_long) = (None, None);
    for base in candidates(pool, allocations, project, pick) {
        let host = format!("{label}.{base}");
        let holder = allocations.iter().find(|a| {
            !(a.project == project && a.environment == environment)
                && a.subdomain.eq_ignore_ascii_case(label)
                && a.base_domain.eq_ignore_ascii_case(base)
        });
        match (holder, length_problem(&host)) {
            (Some(a), _) => {
                taken.get_or_insert(AllocationError::Taken {
                    host,
                    by_project: a.project.clone(),
                    by_environment: a.environment.clone(),
                });
            }
            (None, Some(reason)) => {
                too_long.get_or_insert(AllocationError::TooLong { host, reason });
            }
            (None, None) => {
                return Ok(Allocation {
                    subdomain: label.to_owned(),
                    base_domain: base.to_owned(),
                    project: project.to_owned(),
                    environment: environment.to_owned(),
                });
            }
        }
    }
    Err(taken.or(too_long).unwrap_or(AllocationError::NoBaseDomains))
}

/// Returns the allocations whose (project, environment) is in `live`, in their order, one
/// per (project, environment) (the first). The order is kept rather than sorted because
/// `round-robin` reads the last element as the most recent allocation; append new ones.
pub fn prune(allocations: &[Allocation], live: &BTreeSet<(String, String)>) -> Vec<Allocation> {
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    allocations
        .iter()
        .filter(|a| live.contains(&(a.project.clone(), a.environment.clone())))
        .filter(|a| seen.insert((a.project.as_str(), a.environment.as_str())))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use persys_crds::kapsa::AllocationPolicy;
    use proptest::prelude::*;

    use super::*;

    fn taken(slugs: &[&str]) -> BTreeSet<String> {
        slugs.iter().map(|s| (*s).to_owned()).collect()
    }

    fn hash6(branch: &str) -> String {
        format!("{:06x}", fnv1a64(branch.as_bytes()) >> 40)
    }

    fn pool(bases: &[&str], strategy: &str, reserved: &[&str]) -> DomainPoolSpec {
        DomainPoolSpec {
            base_domains: bases.iter().map(|b| (*b).to_owned()).collect(),
            allocation_policy: AllocationPolicy {
                strategy: strategy.to_owned(),
                reserved_subdomains: reserved.iter().map(|r| (*r).to_owned()).collect(),
            },
            ..DomainPoolSpec::default()
        }
    }

    fn alloc(subdomain: &str, base: &str, project: &str, environment: &str) -> Allocation {
        Allocation {
            subdomain: subdomain.to_owned(),
            base_domain: base.to_owned(),
            project: project.to_owned(),
            environment: environment.to_owned(),
        }
    }

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn slugs_follow_kapsas_examples() {
        let none = BTreeSet::new();
        assert_eq!(branch_slug("feature/new-api", &none), "feature-new-api");
        assert_eq!(branch_slug("Feature//New__API--", &none), "feature-new-api");
        assert_eq!(branch_slug("-release/1.2-", &none), "release-1-2");
        assert_eq!(branch_slug("main", &none), "main");
        assert_eq!(branch_slug("ünïcode", &none), "n-code", "non-ASCII letters become `-`");
    }

    #[test]
    fn an_empty_slug_is_branch() {
        let none = BTreeSet::new();
        assert_eq!(branch_slug("", &none), "branch");
        assert_eq!(branch_slug("///__", &none), "branch");
        assert_eq!(branch_slug("///", &taken(&["branch"])), format!("branch-{}", hash6("///")));
    }

    #[test]
    fn a_taken_slug_gets_the_branch_hash_then_a_counter() {
        let hashed = format!("feature-x-{}", hash6("Feature/X"));
        assert_eq!(branch_slug("Feature/X", &taken(&["feature-x"])), hashed);
        assert_eq!(branch_slug("Feature/X", &taken(&["feature-x", &hashed])), format!("{hashed}-2"));
        let three = taken(&["feature-x", &hashed, &format!("{hashed}-2")]);
        assert_eq!(branch_slug("Feature/X", &three), format!("{hashed}-3"));
        assert_ne!(hash6("Feature/X"), hash6("feature/x"), "the hash reads the full branch name");
    }

    #[test]
    fn the_hash_is_fixed_across_runs_and_versions() {
        // Pinned: a change here renames every capped or conflicting preview's host.
        assert_eq!(branch_slug("feature/x", &taken(&["feature-x"])), "feature-x-8beb2e");
    }

    #[test]
    fn long_branches_are_capped_and_hashed() {
        let branch = format!("feature/{}", "a".repeat(60));
        let slug = branch_slug(&branch, &BTreeSet::new());
        assert_eq!(slug, format!("feature-{}-{}", "a".repeat(SLUG_MAX - 8), hash6(&branch)));
        assert_eq!(slug.len(), SLUG_MAX + 7);
        // A cut that ends on `-` loses it before the hash.
        let branch = format!("{}/tail", "b".repeat(SLUG_MAX - 1));
        assert_eq!(branch_slug(&branch, &BTreeSet::new()), format!("{}-{}", "b".repeat(SLUG_MAX - 1), hash6(&branch)));
        // Exactly SLUG_MAX is not capped.
        assert_eq!(branch_slug(&"c".repeat(SLUG_MAX), &BTreeSet::new()), "c".repeat(SLUG_MAX));
    }

    #[test]
    fn globs_follow_the_documented_semantics() {
        assert!(glob_match("feature/*", "feature/x"));
        assert!(!glob_match("feature/*", "feature/x/y"), "`*` stays within a segment");
        assert!(glob_match("feature/**", "feature/x/y"));
        assert!(glob_match("feature/**", "feature/"));
        assert!(glob_match("feature/*", "feature/"), "`*` may match nothing");
        assert!(!glob_match("feature/*", "feature"));
        assert!(glob_match("**", "a/b/c"));
        assert!(glob_match("*", "main"));
        assert!(!glob_match("*", "a/b"));
        assert!(glob_match("release-?", "release-1"));
        assert!(!glob_match("release-?", "release-12"));
        assert!(!glob_match("a?b", "a/b"), "`?` never matches `/`");
        assert!(glob_match("**/hotfix-*", "team/a/hotfix-1"));
        assert!(!glob_match("**/hotfix-*", "hotfix-1"), "`**/` needs the `/`");
        assert!(glob_match("***", "a/b"), "a longer run of `*` is `**`");
        assert!(glob_match("main", "main"));
        assert!(!glob_match("main", "mainline"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
        assert!(glob_match("[x]+.(y)", "[x]+.(y)"), "other characters are literal");
        assert!(!glob_match("[x]", "x"));
        assert!(!glob_match("dé?à", "dé/à") && glob_match("dé?à", "déjà"), "characters, not bytes");
    }

    #[test]
    fn pathological_globs_stay_polynomial() {
        let branch = "a".repeat(4000);
        let pattern = format!("{}b", "*a".repeat(40));
        assert!(!glob_match(&pattern, &branch));
        let pattern = format!("{}b", "**a".repeat(40));
        assert!(!glob_match(&pattern, &branch));
        assert!(glob_match(&"*a".repeat(40), &branch));
    }

    #[test]
    fn previews_need_an_include_and_no_exclude() {
        let all = BranchFilter::default();
        assert!(wants_preview(&all, "anything/at/all"), "no include: every branch");
        let f =
            BranchFilter { include: vec!["feature/*".into(), "fix/**".into()], exclude: vec!["feature/wip-*".into()] };
        assert!(wants_preview(&f, "feature/login"));
        assert!(wants_preview(&f, "fix/a/b"));
        assert!(!wants_preview(&f, "feature/wip-login"));
        assert!(!wants_preview(&f, "main"));
        let only_exclude = BranchFilter { include: vec![], exclude: vec!["main".into()] };
        assert!(!wants_preview(&only_exclude, "main"));
        assert!(wants_preview(&only_exclude, "dev"));
    }

    #[test]
    fn env_kinds_round_trip() {
        for kind in [EnvKind::Permanent, EnvKind::Preview] {
            assert_eq!(kind.as_str().parse::<EnvKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        let err = "Preview".parse::<EnvKind>().unwrap_err();
        assert_eq!(err.to_string(), "environment type `Preview` is unknown; spec.type is `permanent` or `preview`");
    }

    #[test]
    fn host_labels_follow_kapsas_scheme() {
        assert_eq!(host_label(EnvKind::Permanent, "prod", None, "api"), "api");
        assert_eq!(host_label(EnvKind::Permanent, "staging", Some("ignored"), "api"), "staging.api");
        assert_eq!(host_label(EnvKind::Preview, "api-feature-x", Some("feature-x"), "api"), "feature-x.api");
        assert_eq!(host_label(EnvKind::Preview, "api-feature-x", None, "api"), "api-feature-x.api");
        assert_eq!(
            host_label(EnvKind::Preview, "prod", Some("prod"), "api"),
            "prod.api",
            "only permanent prod is bare"
        );
    }

    #[test]
    fn round_robin_starts_after_the_last_allocation() {
        let p = pool(&["a.test", "b.test", "c.test"], "round-robin", &[]);
        let first = allocate(&p, &[], "ns/one", "prod", "one", 0).unwrap();
        assert_eq!(first.base_domain, "a.test", "nothing allocated yet: the first base domain");
        let after_a = [alloc("x", "a.test", "ns/x", "prod")];
        assert_eq!(allocate(&p, &after_a, "ns/one", "prod", "one", 0).unwrap().base_domain, "b.test");
        let after_c = [alloc("x", "b.test", "ns/x", "prod"), alloc("y", "c.test", "ns/y", "prod")];
        assert_eq!(allocate(&p, &after_c, "ns/one", "prod", "one", 0).unwrap().base_domain, "a.test", "wraps");
        let unknown = pool(&["a.test", "b.test"], "fancy", &[]);
        assert_eq!(allocate(&unknown, &after_a, "ns/one", "prod", "one", 0).unwrap().base_domain, "b.test");
        let gone = [alloc("x", "gone.test", "ns/x", "prod")];
        assert_eq!(allocate(&p, &gone, "ns/one", "prod", "one", 0).unwrap().base_domain, "a.test");
    }

    #[test]
    fn least_used_picks_the_emptiest_base_in_spec_order() {
        let p = pool(&["a.test", "b.test", "c.test"], "least-used", &[]);
        let held = [
            alloc("x", "a.test", "ns/x", "prod"),
            alloc("y", "c.test", "ns/y", "prod"),
            alloc("z", "a.test", "ns/z", "prod"),
        ];
        assert_eq!(allocate(&p, &held, "ns/one", "prod", "one", 0).unwrap().base_domain, "b.test");
        let tie = [alloc("x", "a.test", "ns/x", "prod")];
        assert_eq!(allocate(&p, &tie, "ns/one", "prod", "one", 0).unwrap().base_domain, "b.test", "b before c");
    }

    #[test]
    fn random_uses_the_callers_pick() {
        let p = pool(&["a.test", "b.test", "c.test"], "random", &[]);
        let base = |pick| allocate(&p, &[], "ns/one", "prod", "one", pick).unwrap().base_domain;
        assert_eq!(base(0), "a.test");
        assert_eq!(base(4), "b.test");
        assert_eq!(base(u64::MAX), "a.test", "u64::MAX % 3 == 0");
    }

    #[test]
    fn a_projects_environments_share_its_base_domain() {
        let p = pool(&["a.test", "b.test", "c.test"], "round-robin", &[]);
        let held = [alloc("api", "b.test", "ns/api", "prod"), alloc("web", "c.test", "ns/web", "prod")];
        let staging = allocate(&p, &held, "ns/api", "staging", "staging.api", 0).unwrap();
        assert_eq!(staging, alloc("staging.api", "b.test", "ns/api", "staging"));
    }

    #[test]
    fn an_allocation_is_stable() {
        let p = pool(&["a.test", "b.test"], "random", &["reserved"]);
        let held = [alloc("api", "b.test", "ns/api", "prod"), alloc("web", "a.test", "ns/web", "prod")];
        for pick in [0, 1, 2] {
            assert_eq!(allocate(&p, &held, "ns/api", "prod", "api", pick).unwrap(), held[0]);
        }
        // Even once its label is reserved, a held host stays.
        let held = [alloc("reserved", "a.test", "ns/r", "prod")];
        assert_eq!(allocate(&p, &held, "ns/r", "prod", "reserved", 0).unwrap(), held[0]);
    }

    #[test]
    fn a_changed_label_or_removed_base_is_allocated_again() {
        let p = pool(&["a.test", "b.test"], "round-robin", &[]);
        let held = [alloc("old", "b.test", "ns/api", "prod")];
        assert_eq!(allocate(&p, &held, "ns/api", "prod", "new", 0).unwrap(), alloc("new", "b.test", "ns/api", "prod"));
        let moved = pool(&["a.test"], "round-robin", &[]);
        assert_eq!(
            allocate(&moved, &held, "ns/api", "prod", "old", 0).unwrap(),
            alloc("old", "a.test", "ns/api", "prod")
        );
    }

    #[test]
    fn reserved_subdomains_are_refused_ignoring_case() {
        let p = pool(&["a.test"], "round-robin", &["WWW", "admin", "staging.api"]);
        let err = allocate(&p, &[], "ns/www", "prod", "www", 0).unwrap_err();
        assert_eq!(err, AllocationError::Reserved { subdomain: "www".into(), label: "www".into() });
        assert!(err.to_string().contains("choose another spec.domain.subdomain"), "{err}");
        let first = allocate(&p, &[], "ns/api", "admin", "admin.api", 0).unwrap_err();
        assert!(matches!(first, AllocationError::Reserved { ref subdomain, .. } if subdomain == "admin"));
        let last = allocate(&p, &[], "ns/www", "staging", "staging.www", 0).unwrap_err();
        assert!(matches!(last, AllocationError::Reserved { ref subdomain, .. } if subdomain == "www"));
        let whole = allocate(&p, &[], "ns/api", "staging", "staging.api", 0).unwrap_err();
        assert!(matches!(whole, AllocationError::Reserved { ref subdomain, .. } if subdomain == "staging.api"));
        assert!(allocate(&p, &[], "ns/api", "prod", "wwwx", 0).is_ok());
    }

    #[test]
    fn a_taken_host_moves_to_the_next_base_domain() {
        let p = pool(&["a.test", "b.test"], "round-robin", &[]);
        let held = [alloc("api", "b.test", "ns/api", "prod")];
        // Round-robin would pick a.test after b.test; it is free.
        assert_eq!(allocate(&p, &held, "other/api", "prod", "api", 0).unwrap().base_domain, "a.test");
        let held = [alloc("api", "a.test", "ns/api", "prod"), alloc("zzz", "a.test", "ns/z", "prod")];
        // Round-robin picks b.test.
        assert_eq!(allocate(&p, &held, "other/api", "prod", "api", 0).unwrap().base_domain, "b.test");
        let held = [alloc("api", "a.test", "ns/api", "prod"), alloc("API", "B.test", "ns/api2", "prod")];
        let err = allocate(&p, &held, "other/api", "prod", "api", 0).unwrap_err();
        assert_eq!(
            err,
            AllocationError::Taken {
                host: "api.a.test".into(),
                by_project: "ns/api".into(),
                by_environment: "prod".into()
            }
        );
        assert!(err.to_string().contains("choose another spec.domain.subdomain"), "{err}");
    }

    #[test]
    fn dns_length_limits_are_enforced() {
        let p = pool(&["a.test"], "round-robin", &[]);
        let long_label = "x".repeat(64);
        let err = allocate(&p, &[], "ns/a", "prod", &long_label, 0).unwrap_err();
        assert!(matches!(err, AllocationError::TooLong { .. }), "{err}");
        assert!(err.to_string().contains("64 characters, at most 63"), "{err}");
        let ok = allocate(&p, &[], "ns/a", "prod", &"x".repeat(63), 0);
        assert!(ok.is_ok());
        // Four labels of 63 make 255 with the dots: too long on any base domain.
        let label = vec!["y".repeat(63); 3].join(".");
        let long_base = format!("{}.test", "z".repeat(60));
        let p = pool(&[&long_base, "a.test"], "round-robin", &[]);
        assert_eq!(allocate(&p, &[], "ns/a", "prod", &label, 0).unwrap().base_domain, "a.test", "skips the long base");
        let p = pool(&[&long_base], "round-robin", &[]);
        let err = allocate(&p, &[], "ns/a", "prod", &label, 0).unwrap_err();
        assert!(err.to_string().contains("at most 253 allowed"), "{err}");
    }

    #[test]
    fn bad_pools_and_labels_are_explained() {
        let empty = pool(&[], "round-robin", &[]);
        let err = allocate(&empty, &[], "ns/a", "prod", "a", 0).unwrap_err();
        assert_eq!(err, AllocationError::NoBaseDomains);
        assert!(err.to_string().contains("spec.baseDomains"));
        assert_eq!(
            allocate(&pool(&[" ", ""], "", &[]), &[], "ns/a", "prod", "a", 0),
            Err(AllocationError::NoBaseDomains)
        );
        let p = pool(&["a.test"], "round-robin", &[]);
        for label in ["", "a..b", "-a", "a-", "A", "a_b", "a.b."] {
            let err = allocate(&p, &[], "ns/a", "prod", label, 0).unwrap_err();
            assert_eq!(err, AllocationError::InvalidLabel { label: label.into() }, "{label}");
        }
    }

    #[test]
    fn prune_keeps_live_environments_once_in_order() {
        let a = alloc("a", "x.test", "ns/a", "prod");
        let b = alloc("b", "x.test", "ns/b", "prod");
        let dup = alloc("a2", "x.test", "ns/a", "prod");
        let dead = alloc("c", "x.test", "ns/c", "prod");
        let live: BTreeSet<(String, String)> =
            [("ns/b".into(), "prod".into()), ("ns/a".into(), "prod".into())].into_iter().collect();
        assert_eq!(prune(&[b.clone(), dead, a.clone(), dup, b.clone()], &live), vec![b, a]);
        assert!(prune(&[], &live).is_empty());
    }

    fn glob_reference(pattern: &str) -> regex::Regex {
        let mut re = String::from("(?s)^");
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek() == Some(&'*') => {
                    while chars.peek() == Some(&'*') {
                        chars.next();
                    }
                    re.push_str(".*");
                }
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        re.push('$');
        regex::Regex::new(&re).unwrap()
    }

    proptest! {
        #[test]
        fn slugs_are_dns_labels_and_never_taken(
            branch in "\\PC{0,80}|[a-zA-Z0-9/_.-]{0,70}",
            others in proptest::collection::vec("[a-z0-9/-]{0,50}", 0..6),
        ) {
            let label = regex::Regex::new(persys_crds::kapsa::DNS_LABEL).unwrap();
            // `taken` as other branches would fill it: their slugs, plus this branch's hashed forms.
            let mut taken: BTreeSet<String> = others.iter().map(|o| branch_slug(o, &BTreeSet::new())).collect();
            for _ in 0..3 {
                let slug = branch_slug(&branch, &taken);
                prop_assert!(label.is_match(&slug), "{slug:?}");
                prop_assert!(!taken.contains(&slug));
                prop_assert_eq!(&slug, &branch_slug(&branch, &taken), "deterministic");
                taken.insert(slug);
            }
        }

        #[test]
        fn globs_agree_with_a_regex_translation(pattern in "[ab/*?.]{0,10}", branch in "[ab/.]{0,12}") {
            prop_assert_eq!(glob_match(&pattern, &branch), glob_reference(&pattern).is_match(&branch));
        }

        #[test]
        fn long_globs_finish(pattern in "[a*?/]{0,200}", branch in "[ab/]{0,2000}") {
            let _ = glob_match(&pattern, &branch);
        }

        #[test]
        fn no_two_environments_share_a_host(
            bases in proptest::collection::vec(prop_oneof!["a.test", "b.test", "c.test", "A.TEST"], 0..4),
            strategy in prop_oneof!["round-robin", "least-used", "random", "other"],
            reserved in proptest::collection::vec(prop_oneof!["www", "api"], 0..2),
            calls in proptest::collection::vec(
                (0..4usize, 0..3usize, prop_oneof!["api", "web", "staging.api", "x", "www"], any::<u64>()),
                0..40,
            ),
        ) {
            let bases: Vec<&str> = bases.iter().map(String::as_str).collect();
            let reserved: Vec<&str> = reserved.iter().map(String::as_str).collect();
            let p = pool(&bases, &strategy, &reserved);
            let mut held: Vec<Allocation> = Vec::new();
            for (project, env, label, pick) in calls {
                let project = format!("ns/p{project}");
                let env = format!("e{env}");
                match allocate(&p, &held, &project, &env, &label, pick) {
                    Ok(a) => {
                        prop_assert_eq!(&a.subdomain, &label);
                        prop_assert!(bases.iter().any(|b| b.eq_ignore_ascii_case(&a.base_domain)));
                        prop_assert_eq!(&allocate(&p, &held, &project, &env, &label, pick ^ 1).map(|_| ()), &Ok(()));
                        match held.iter_mut().find(|h| h.project == project && h.environment == env) {
                            Some(h) => *h = a,
                            None => held.push(a),
                        }
                        let again = allocate(&p, &held, &project, &env, &label, pick.wrapping_add(1));
                        prop_assert_eq!(again.as_ref().ok(), held.iter().find(|h| h.project == project && h.environment == env));
                    }
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
                let hosts: BTreeSet<(String, String)> =
                    held.iter().map(|h| (h.subdomain.to_lowercase(), h.base_domain.to_lowercase())).collect();
                prop_assert_eq!(hosts.len(), held.len(), "{:?}", held);
            }
        }
    }
}
