//! Reading ProjectService's requests: pages and their tokens, label selectors, the `project`
//! filters, and the order builds are listed in.

use std::cmp::Reverse;

use k8s_openapi::jiff::Timestamp;
use kube::{ResourceExt, api::DynamicObject};
use persys_crds::kapsa::Environment;
use persys_kit::error::Violations;

use crate::{
    project::{LABEL_BRANCH, LABEL_PROJECT, LABEL_PROJECT_NAMESPACE},
    projects_proto as convert,
    serving::key,
};

/// A `project` filter: a Project's name, or `<namespace>/<name>`.
#[derive(Clone, Debug, Default)]
pub(super) struct ProjectFilter {
    pub(super) namespace: Option<String>,
    pub(super) name: String,
}

impl ProjectFilter {
    /// The filter `s` (empty: none), or a violation of `field`.
    pub(super) fn parse(v: &mut Violations, field: &str, s: &str) -> Option<Self> {
        if s.is_empty() {
            return None;
        }
        // Kubernetes names: what a label selector may carry as a value, too.
        let name_like = |n: &str| {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        let parsed = match s.split_once('/') {
            None if name_like(s) => Some(Self { namespace: None, name: s.to_owned() }),
            Some((ns, name)) if name_like(ns) && name_like(name) => {
                Some(Self { namespace: Some(ns.to_owned()), name: name.to_owned() })
            }
            _ => None,
        };
        v.check(parsed.is_none(), field, format!("`{s}` is neither a Project's name nor <namespace>/<name>"));
        parsed
    }

    /// Whether the Project `namespace/name` passes.
    pub(super) fn matches(&self, namespace: &str, name: &str) -> bool {
        self.name == name && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
    }
}

/// The Project an Environment belongs to: (namespace, name).
pub(super) fn environment_project(e: &Environment) -> (String, String) {
    let r = &e.spec.project_ref;
    let ns = if r.namespace.is_empty() {
        e.labels().get(LABEL_PROJECT_NAMESPACE).cloned().unwrap_or_default()
    } else {
        r.namespace.clone()
    };
    (ns, r.name.clone())
}

/// The Project a build's Image belongs to: (namespace, name), from its labels.
pub(super) fn image_project(i: &DynamicObject) -> (String, String) {
    let l = i.labels();
    (l.get(LABEL_PROJECT_NAMESPACE).cloned().unwrap_or_default(), l.get(LABEL_PROJECT).cloned().unwrap_or_default())
}

/// Whether every value is a named value of an enum (UNSPECIFIED excluded).
pub(super) fn known<E: TryFrom<i32>>(values: &[i32], unspecified: i32) -> bool {
    values.iter().all(|v| *v != unspecified && E::try_from(*v).is_ok())
}

/// Whether a build's Image is of `branch` (as git names it, or its slug).
pub(super) fn of_branch(i: &DynamicObject, branch: &str) -> bool {
    i.annotations().get(convert::BRANCH_NAME).is_some_and(|b| b == branch)
        || i.labels().get(LABEL_BRANCH).is_some_and(|b| b == branch)
}

/// Newest-first order of builds: latest state change first, then namespace and name. The page
/// token is `<nanoseconds>/<namespace>/<name>` of the last build on the page.
pub(super) type BuildOrder = (Reverse<i128>, String);

pub(super) fn build_order(i: &DynamicObject) -> BuildOrder {
    (Reverse(convert::build_time(i).map_or(0, Timestamp::as_nanosecond)), key(i))
}

pub(super) fn build_token(order: &BuildOrder) -> String {
    format!("{}/{}", order.0.0, order.1)
}

pub(super) fn parse_build_token(v: &mut Violations, token: &str) -> Option<BuildOrder> {
    if token.is_empty() {
        return None;
    }
    let parsed = token.split_once('/').and_then(|(t, k)| Some((Reverse(t.parse::<i128>().ok()?), k.to_owned())));
    v.check(parsed.is_none(), "page.page_token", "not a token this service issued; pass next_page_token as it came");
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_filters_take_a_name_or_namespace_and_name() {
        let mut v = Violations::new();
        let name = ProjectFilter::parse(&mut v, "project", "api").unwrap();
        assert!(name.matches("team-a", "api") && name.matches("team-b", "api") && !name.matches("team-a", "web"));
        let exact = ProjectFilter::parse(&mut v, "project", "team-a/api").unwrap();
        assert!(exact.matches("team-a", "api") && !exact.matches("team-b", "api"));
        assert!(ProjectFilter::parse(&mut v, "project", "").is_none());
        assert!(v.finish().is_ok());
        for bad in ["a/b/c", "/api", "team-a/", "Api", "api,tier=x"] {
            let mut v = Violations::new();
            assert!(ProjectFilter::parse(&mut v, "project", bad).is_none(), "{bad}");
            assert!(v.finish().is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn build_tokens_read_back_and_strangers_are_refused() {
        let order = (Reverse(1_764_550_800_000_000_000_i128), "team-a-api/build-main".to_owned());
        let mut v = Violations::new();
        assert_eq!(parse_build_token(&mut v, &build_token(&order)), Some(order));
        assert!(v.finish().is_ok());
        let mut v = Violations::new();
        assert_eq!(parse_build_token(&mut v, "team-a-api/build-main"), None);
        assert!(v.finish().is_err());
    }
}
