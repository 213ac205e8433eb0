//! Reading ProjectService's requests: pages and their tokens, label selectors, the `project`
//! filters, and the order builds are listed in.

use std::cmp::Reverse;

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt, api::DynamicObject};
use persys_crds::kapsa::Environment;
use persys_kit::error::Violations;
use persys_proto::common::v1::{LabelSelector, LabelSelectorOperator, PageRequest, PageResponse};

use crate::{
    grpc::{DEFAULT_PAGE, MAX_PAGE},
    project::{LABEL_BRANCH, LABEL_PROJECT, LABEL_PROJECT_NAMESPACE},
    projects_proto as convert,
};

/// An object's place in namespace-and-name order, and its page token.
pub(super) fn key<K: Resource>(o: &K) -> String {
    format!("{}/{}", o.meta().namespace.as_deref().unwrap_or_default(), o.meta().name.as_deref().unwrap_or_default())
}

/// The page size a request asks for (the default for 0, clamped to the maximum).
pub(super) fn page_size(v: &mut Violations, page: Option<&PageRequest>) -> usize {
    let size = page.map_or(0, |p| p.page_size);
    v.check(size < 0, "page.page_size", "must not be negative (0 asks for the default)");
    if size <= 0 { DEFAULT_PAGE } else { (size as usize).min(MAX_PAGE) }
}

/// One page of `items` (in order): those `after` the token, at most `size`, and the token of
/// the next page.
pub(super) fn paginate<T>(
    items: Vec<T>,
    size: usize,
    after: impl Fn(&T) -> bool,
    token: impl Fn(&T) -> String,
) -> (Vec<T>, PageResponse) {
    let total = items.len() as i64;
    let mut page: Vec<T> = items.into_iter().filter(|i| after(i)).take(size + 1).collect();
    let next = if page.len() > size {
        page.truncate(size);
        page.last().map(token).unwrap_or_default()
    } else {
        String::new()
    };
    (page, PageResponse { next_page_token: next, total_size: Some(total) })
}

/// Checks a label selector as Kubernetes would: keys set, operators known, values present for
/// IN and NOT_IN and absent for EXISTS and DOES_NOT_EXIST.
pub(super) fn check_selector(v: &mut Violations, selector: Option<&LabelSelector>) {
    let Some(s) = selector else { return };
    v.check(s.match_labels.keys().any(String::is_empty), "label_selector.match_labels", "keys must not be empty");
    for (i, r) in s.match_expressions.iter().enumerate() {
        let field = format!("label_selector.match_expressions[{i}]");
        v.check(r.key.is_empty(), &format!("{field}.key"), "required");
        match LabelSelectorOperator::try_from(r.operator) {
            Ok(LabelSelectorOperator::In | LabelSelectorOperator::NotIn) => {
                v.check(r.values.is_empty(), &format!("{field}.values"), "required with IN and NOT_IN");
            }
            Ok(LabelSelectorOperator::Exists | LabelSelectorOperator::DoesNotExist) => {
                v.check(
                    !r.values.is_empty(),
                    &format!("{field}.values"),
                    "must be empty with EXISTS and DOES_NOT_EXIST",
                );
            }
            _ => {
                v.check(true, &format!("{field}.operator"), "use IN, NOT_IN, EXISTS or DOES_NOT_EXIST");
            }
        }
    }
}

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

    #[test]
    fn pages_end_with_an_empty_token() {
        let items: Vec<u32> = (1..=5).collect();
        let (page, response) = paginate(items.clone(), 2, |_| true, |i| i.to_string());
        assert_eq!((page, response.next_page_token.as_str(), response.total_size), (vec![1, 2], "2", Some(5)));
        let (page, response) = paginate(items, 2, |i| *i > 4, |i| i.to_string());
        assert_eq!((page, response.next_page_token.as_str()), (vec![5], ""));
    }
}
