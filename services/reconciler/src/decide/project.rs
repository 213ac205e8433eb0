//! What a Kapsa `Project` should own, from its spec, the branch heads of the last poll and the
//! builds' outcomes: the project's namespace, which branches are built at which commit and
//! under which tag, which Environments exist with which image, and when previews expire.
//! Pure: the Project controller reads, these decide, the controller writes.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;
use persys_crds::kapsa::{BranchStatus, ProjectSpec};

use super::domain::{self, EnvKind};

/// Longest namespace name.
const MAX_NAMESPACE: usize = 63;

/// The namespace a project's builds and environments run in: `<namespace>-<project>`, or a
/// shortened form ending in a hash of both when that is longer than a namespace name may be.
pub fn namespace(project_namespace: &str, project: &str) -> String {
    let full = format!("{project_namespace}-{project}");
    if full.len() <= MAX_NAMESPACE {
        return full;
    }
    // FNV-1a: stable across runs and Rust versions, unlike the std hasher.
    let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let keep = MAX_NAMESPACE - 9;
    let head = full[..keep].trim_end_matches('-');
    format!("{head}-{:08x}", hash as u32)
}

/// Parses a Go-style duration as Kapsa's `ttl` is written: `168h`, `1h30m`, `90s`, `2d`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration like 168h, 1h30m or 30m");
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let per = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(bad()),
        };
        let part = per.checked_mul(u32::try_from(n).map_err(|_| bad())?).ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A branch to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Build {
    /// The branch.
    pub branch: String,
    /// Its slug (names the build and the preview).
    pub slug: String,
    /// The commit to build.
    pub commit: String,
    /// The image tag to push to: `<sha7>`, or `<slug>-<sha7>` for a preview branch.
    pub tag: String,
}

/// An Environment the project should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedEnvironment {
    /// The Environment's name.
    pub name: String,
    /// Permanent or preview.
    pub kind: EnvKind,
    /// Its branch.
    pub branch: String,
    /// The label before the base domain (`api`, `staging.api`, `feature-x.api`).
    pub host_label: String,
    /// Roll to each new image.
    pub auto_sync: bool,
    /// When a preview goes.
    pub expires_at: Option<Timestamp>,
}

/// The plan for one reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Branches as the status records them (heads, slugs, images), sorted by name.
    pub branches: Vec<BranchStatus>,
    /// What to build.
    pub builds: Vec<Build>,
    /// Environments to have.
    pub environments: Vec<WantedEnvironment>,
    /// The earliest preview expiry (reconcile again then).
    pub next_expiry: Option<Timestamp>,
}

/// The name of a preview's Environment.
pub fn preview_name(slug: &str) -> String {
    let mut name = format!("preview-{slug}");
    name.truncate(MAX_NAMESPACE);
    name.trim_end_matches('-').to_owned()
}

/// The first 7 hex digits of a commit.
pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(7)]
}

/// Decides branches, builds and environments.
///
/// `heads` are the branch heads of this poll, or `None` when the repository could not be
/// polled (the previous heads stand). `previous` is the status's branch list. A branch keeps
/// its slug once given; a new head restarts its preview's lifetime.
pub fn plan(
    spec: &ProjectSpec,
    previous: &[BranchStatus],
    heads: Option<&BTreeMap<String, String>>,
    now: Timestamp,
) -> Result<Plan, String> {
    let ttl = match &spec.preview_environments {
        Some(p) if p.enabled => Some(parse_ttl(&p.ttl).map_err(|e| format!("spec.previewEnvironments.ttl: {e}"))?),
        _ => None,
    };
    let old: BTreeMap<&str, &BranchStatus> = previous.iter().map(|b| (b.name.as_str(), b)).collect();
    let heads: BTreeMap<String, String> = match heads {
        Some(h) => h.clone(),
        None => previous.iter().map(|b| (b.name.clone(), b.commit.clone())).collect(),
    };
    let permanent: BTreeMap<&str, (&str, bool)> = spec
        .environments
        .iter()
        .map(|e| {
            let branch = e.branch.as_deref().filter(|b| !b.is_empty()).unwrap_or(&spec.repository.branch);
            (e.name.as_str(), (branch, e.auto_sync))
        })
        .collect();
    let permanent_branches: BTreeSet<&str> = permanent.values().map(|(b, _)| *b).collect();

    let mut taken: BTreeSet<String> = previous.iter().map(|b| b.slug.clone()).filter(|s| !s.is_empty()).collect();
    let mut branches = Vec::new();
    let mut builds = Vec::new();
    let mut environments = Vec::new();
    let mut next_expiry: Option<Timestamp> = None;
    for (name, commit) in &heads {
        let was = old.get(name.as_str());
        let preview = ttl.is_some()
            && !permanent_branches.contains(name.as_str())
            && spec.preview_environments.as_ref().is_some_and(|p| domain::wants_preview(&p.branches, name));
        let tracked = permanent_branches.contains(name.as_str()) || preview || *name == spec.repository.branch;
        if !tracked {
            continue;
        }
        let slug = match was.map(|b| b.slug.as_str()).filter(|s| !s.is_empty()) {
            Some(s) => s.to_owned(),
            None => {
                let s = domain::branch_slug(name, &taken);
                taken.insert(s.clone());
                s
            }
        };
        let moved = was.is_none_or(|b| b.commit != *commit);
        let seen_at = if moved {
            now
        } else {
            was.and_then(|b| b.commit_seen_at.as_deref()).and_then(|t| t.parse().ok()).unwrap_or(now)
        };
        let mut status = BranchStatus {
            name: name.clone(),
            commit: commit.clone(),
            commit_seen_at: Some(seen_at.to_string()),
            slug: slug.clone(),
            image: was.and_then(|b| b.image.clone()),
            image_commit: was.and_then(|b| b.image_commit.clone()),
            failed_commit: was.and_then(|b| b.failed_commit.clone()),
        };
        if status.failed_commit.as_ref().is_some_and(|f| f != commit) {
            status.failed_commit = None;
        }
        let expires_at = match (preview, ttl) {
            (true, Some(ttl)) => seen_at.checked_add(ttl).ok(),
            _ => None,
        };
        let expired = expires_at.is_some_and(|e| e <= now);
        if preview && !expired {
            environments.push(WantedEnvironment {
                name: preview_name(&slug),
                kind: EnvKind::Preview,
                branch: name.clone(),
                host_label: domain::host_label(EnvKind::Preview, "", Some(&slug), &spec.domain.subdomain),
                auto_sync: true,
                expires_at,
            });
            if let Some(e) = expires_at {
                next_expiry = Some(next_expiry.map_or(e, |n| n.min(e)));
            }
        }
        if !preview || !expired {
            let tag = if preview { format!("{slug}-{}", short(commit)) } else { short(commit).to_owned() };
            builds.push(Build { branch: name.clone(), slug, commit: commit.clone(), tag });
        }
        branches.push(status);
    }
    for (env, (branch, auto_sync)) in &permanent {
        environments.push(WantedEnvironment {
            name: (*env).to_owned(),
            kind: EnvKind::Permanent,
            branch: (*branch).to_owned(),
            host_label: domain::host_label(EnvKind::Permanent, env, None, &spec.domain.subdomain),
            auto_sync: *auto_sync,
            expires_at: None,
        });
    }
    environments.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Plan { branches, builds, environments, next_expiry })
}

/// What a build reported, as the controller read it from the kpack `Image`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildOutcome {
    /// Not built yet (or building).
    Building,
    /// Built: the image reference (by digest).
    Succeeded(String),
    /// Failed, with kpack's reason and message.
    Failed(String),
}

/// Records a build's outcome for `commit` into `branch`: a success becomes the branch's
/// image; a failure marks the commit failed and keeps the last good image.
pub fn record(branch: &mut BranchStatus, commit: &str, outcome: &BuildOutcome) {
    if branch.commit != commit {
        return;
    }
    match outcome {
        BuildOutcome::Building => {}
        BuildOutcome::Succeeded(image) => {
            branch.image = Some(image.clone());
            branch.image_commit = Some(commit.to_owned());
            branch.failed_commit = None;
        }
        BuildOutcome::Failed(_) => branch.failed_commit = Some(commit.to_owned()),
    }
}

/// The image an Environment should run: with `auto_sync`, the branch's last good image;
/// without, the one it runs already (the first good image when it has none).
pub fn environment_image(current: Option<&str>, auto_sync: bool, branch: Option<&BranchStatus>) -> Option<String> {
    let built = branch.and_then(|b| b.image.clone());
    match (current, auto_sync) {
        (Some(c), false) => Some(c.to_owned()),
        (_, true) => built.or_else(|| current.map(str::to_owned)),
        (None, false) => built,
    }
}

/// A branch is building: its head has neither an image nor a failed build.
pub fn building(branch: &BranchStatus) -> bool {
    branch.image_commit.as_deref() != Some(&branch.commit) && branch.failed_commit.as_deref() != Some(&branch.commit)
}

#[cfg(test)]
mod tests {
    use persys_crds::kapsa::{BranchFilter, PreviewEnvironments, ProjectEnvironment, Repository};

    use super::*;

    fn spec() -> ProjectSpec {
        ProjectSpec {
            repository: Repository { url: "http://git/x.git".into(), branch: "main".into(), ..Default::default() },
            domain: persys_crds::kapsa::Domain { subdomain: "api".into(), domain_pool_ref: "pool".into() },
            environments: vec![
                ProjectEnvironment { name: "prod".into(), branch: None, auto_sync: true },
                ProjectEnvironment { name: "staging".into(), branch: Some("develop".into()), auto_sync: false },
            ],
            preview_environments: Some(PreviewEnvironments {
                enabled: true,
                ttl: "1h".into(),
                branches: BranchFilter { include: vec!["feature/*".into()], exclude: vec!["feature/wip-*".into()] },
            }),
            ..Default::default()
        }
    }

    fn heads(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(b, c)| ((*b).to_owned(), (*c).to_owned())).collect()
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn permanent_and_preview_branches_are_built_others_ignored() {
        let now: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let h = heads(&[("main", A), ("develop", B), ("feature/login", A), ("feature/wip-x", B), ("chore/y", A)]);
        let p = plan(&spec(), &[], Some(&h), now).unwrap();
        let built: Vec<(&str, &str)> = p.builds.iter().map(|b| (b.branch.as_str(), b.tag.as_str())).collect();
        assert_eq!(
            built,
            vec![("develop", "bbbbbbb"), ("feature/login", "feature-login-aaaaaaa"), ("main", "aaaaaaa")]
        );
        let envs: Vec<(&str, &str, &str)> =
            p.environments.iter().map(|e| (e.name.as_str(), e.branch.as_str(), e.host_label.as_str())).collect();
        assert_eq!(
            envs,
            vec![
                ("preview-feature-login", "feature/login", "feature-login.api"),
                ("prod", "main", "api"),
                ("staging", "develop", "staging.api"),
            ]
        );
        let expiry: Timestamp = "2026-12-01T01:00:00Z".parse().unwrap();
        assert_eq!(p.next_expiry, Some(expiry));
        assert_eq!(p.environments[0].expires_at, Some(expiry));
    }

    #[test]
    fn a_preview_expires_ttl_after_its_head_last_moved_and_returns_with_the_next_commit() {
        let t0: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let h = heads(&[("main", A), ("feature/x", A)]);
        let first = plan(&spec(), &[], Some(&h), t0).unwrap();
        assert!(first.environments.iter().any(|e| e.name == "preview-feature-x"));
        let later: Timestamp = "2026-12-01T02:00:00Z".parse().unwrap();
        let expired = plan(&spec(), &first.branches, Some(&h), later).unwrap();
        assert!(!expired.environments.iter().any(|e| e.name == "preview-feature-x"), "expired after 1h");
        assert!(!expired.builds.iter().any(|b| b.branch == "feature/x"), "an expired preview is not built");
        let pushed = heads(&[("main", A), ("feature/x", B)]);
        let back = plan(&spec(), &expired.branches, Some(&pushed), later).unwrap();
        let env = back.environments.iter().find(|e| e.name == "preview-feature-x").expect("back on a new commit");
        assert_eq!(env.expires_at, later.checked_add(Duration::from_secs(3600)).ok());
    }

    #[test]
    fn a_deleted_branch_loses_its_preview_and_a_failed_poll_keeps_the_heads() {
        let t0: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let first = plan(&spec(), &[], Some(&heads(&[("main", A), ("feature/x", A)])), t0).unwrap();
        let gone = plan(&spec(), &first.branches, Some(&heads(&[("main", A)])), t0).unwrap();
        assert!(!gone.environments.iter().any(|e| e.kind == EnvKind::Preview));
        assert!(!gone.branches.iter().any(|b| b.name == "feature/x"));
        let unpolled = plan(&spec(), &first.branches, None, t0).unwrap();
        assert_eq!(unpolled.branches, first.branches);
    }

    #[test]
    fn slugs_stay_once_given_and_never_collide() {
        let t0: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let mut s = spec();
        s.preview_environments.as_mut().unwrap().branches.include = vec!["**".into()];
        let p = plan(&s, &[], Some(&heads(&[("main", A), ("feature/a", A), ("feature-a", B)])), t0).unwrap();
        let slugs: BTreeSet<&str> = p.branches.iter().map(|b| b.slug.as_str()).collect();
        assert_eq!(slugs.len(), 3, "{:?}", p.branches);
        let again =
            plan(&s, &p.branches, Some(&heads(&[("main", A), ("feature/a", B), ("feature-a", A)])), t0).unwrap();
        for (a, b) in p.branches.iter().zip(&again.branches) {
            assert_eq!(a.slug, b.slug);
        }
    }

    #[test]
    fn a_failed_build_keeps_the_last_good_image_until_the_next_commit() {
        let mut b = BranchStatus { name: "main".into(), commit: A.into(), ..Default::default() };
        assert!(building(&b));
        record(&mut b, A, &BuildOutcome::Succeeded("r/x@sha256:1".into()));
        assert!(!building(&b));
        b.commit = B.into();
        assert!(building(&b));
        record(&mut b, B, &BuildOutcome::Failed("BuildFailed".into()));
        assert!(!building(&b), "a failed commit is not retried");
        assert_eq!(b.image.as_deref(), Some("r/x@sha256:1"));
        assert_eq!(environment_image(Some("r/x@sha256:1"), true, Some(&b)).as_deref(), Some("r/x@sha256:1"));
        let p = plan(&spec(), std::slice::from_ref(&b), Some(&heads(&[("main", B)])), Timestamp::now()).unwrap();
        assert_eq!(p.branches[0].failed_commit.as_deref(), Some(B), "the same head stays failed");
        let next = plan(&spec(), &p.branches, Some(&heads(&[("main", A)])), Timestamp::now()).unwrap();
        assert_eq!(next.branches[0].failed_commit, None, "a new head is built again");
    }

    #[test]
    fn environments_without_auto_sync_keep_their_image() {
        let b = BranchStatus { image: Some("new".into()), ..Default::default() };
        assert_eq!(environment_image(Some("old"), false, Some(&b)).as_deref(), Some("old"));
        assert_eq!(environment_image(None, false, Some(&b)).as_deref(), Some("new"));
        assert_eq!(environment_image(Some("old"), true, Some(&b)).as_deref(), Some("new"));
        assert_eq!(environment_image(None, true, None), None);
    }

    #[test]
    fn ttls_parse_like_go_durations() {
        assert_eq!(parse_ttl("168h"), Ok(Duration::from_secs(168 * 3600)));
        assert_eq!(parse_ttl("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "h", "10", "1x", "99999999999h", "-1h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespaces_fit_and_differ() {
        assert_eq!(namespace("team", "api"), "team-api");
        let long = namespace(&"n".repeat(60), &"p".repeat(60));
        assert!(long.len() <= 63, "{long}");
        assert_ne!(long, namespace(&"n".repeat(60), &"p".repeat(61)));
    }
}
