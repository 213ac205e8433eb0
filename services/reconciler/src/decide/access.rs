//! Who may read a namespace's personas, projects, environments and builds.
//!
//! Admins and viewers read every namespace (viewers read all, as they do workloads). A member
//! reads the namespaces whose `persys.io/members` annotation names them (user names, separated
//! by commas or whitespace), and the namespaces the Project controller made for the projects
//! of those namespaces (`<namespace>-<project>`, labelled with their Project's namespace), where
//! the projects' environments and builds live. Nothing else: a namespace without the
//! annotation is hidden from every member.

use std::collections::BTreeMap;

/// The annotation naming a namespace's members.
pub const MEMBERS_ANNOTATION: &str = "persys.io/members";
/// The label (set by the Project controller) naming the Project's namespace on a project's own
/// namespace.
pub const PARENT_LABEL: &str = "kapsa-project.io/project-namespace";
/// The manager label the Project controller puts on the namespaces it makes.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "persys-reconciler");

/// The user names an annotation value lists.
pub fn members(annotation: &str) -> impl Iterator<Item = &str> {
    annotation.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty())
}

/// Whether a namespace's annotations name `user` as a member.
pub fn names(annotations: &BTreeMap<String, String>, user: &str) -> bool {
    annotations.get(MEMBERS_ANNOTATION).is_some_and(|v| members(v).any(|m| m == user))
}

/// The namespace whose members also read this one: the Project's namespace, for a namespace
/// the Project controller made (one level only; never the namespace itself).
pub fn parent<'a>(name: &str, labels: &'a BTreeMap<String, String>) -> Option<&'a str> {
    let managed = labels.get(MANAGED_BY.0).is_some_and(|v| v == MANAGED_BY.1);
    labels.get(PARENT_LABEL).map(String::as_str).filter(|p| managed && !p.is_empty() && *p != name)
}

/// The metadata of a namespace this decision reads.
#[derive(Clone, Copy, Debug)]
pub struct Meta<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its labels.
    pub labels: &'a BTreeMap<String, String>,
    /// Its annotations.
    pub annotations: &'a BTreeMap<String, String>,
}

/// Whether member `user` reads namespace `ns` (`None`: no such namespace, or not known to this
/// replica), given the namespace [`parent`] names for it, if any.
pub fn member_reads(user: &str, ns: Option<Meta<'_>>, parent_ns: Option<Meta<'_>>) -> bool {
    let Some(ns) = ns else { return false };
    if names(ns.annotations, user) {
        return true;
    }
    let expected = parent(ns.name, ns.labels);
    parent_ns.is_some_and(|p| expected == Some(p.name) && names(p.annotations, user))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_annotation_lists_names_by_comma_or_space() {
        let a = map(&[(MEMBERS_ANNOTATION, " alice, bob\ncarol  ,,dave ")]);
        for user in ["alice", "bob", "carol", "dave"] {
            assert!(names(&a, user), "{user}");
        }
        for user in ["", "al", "alice,", "Alice", "eve"] {
            assert!(!names(&a, user), "{user:?}");
        }
        assert!(!names(&map(&[]), "alice"));
        assert!(!names(&map(&[("persys.io/member", "alice")]), "alice"), "another key");
    }

    #[test]
    fn members_of_a_projects_namespace_read_the_namespace_made_for_it() {
        let empty = map(&[]);
        let team = map(&[(MEMBERS_ANNOTATION, "alice")]);
        let made = map(&[MANAGED_BY, (PARENT_LABEL, "team")]);
        let forged = map(&[(PARENT_LABEL, "team")]);
        let looped = map(&[MANAGED_BY, (PARENT_LABEL, "team-shop")]);
        let team_meta = Meta { name: "team", labels: &empty, annotations: &team };
        let ns = |name, labels| Some(Meta { name, labels, annotations: &empty });
        let reads = |user, meta: Option<Meta<'_>>| {
            let parent = meta.and_then(|m| parent(m.name, m.labels)).filter(|p| *p == "team").map(|_| team_meta);
            member_reads(user, meta, parent)
        };
        assert!(reads("alice", Some(team_meta)));
        assert!(reads("alice", ns("team-shop", &made)));
        assert!(!reads("bob", ns("team-shop", &made)), "not a member of the parent");
        assert!(!reads("alice", ns("team-shop", &forged)), "not made by the Project controller");
        assert!(!reads("alice", ns("team-shop", &looped)), "its own parent");
        assert!(!reads("alice", None), "unknown namespace");
        let orphan = map(&[MANAGED_BY, (PARENT_LABEL, "gone")]);
        assert!(!reads("alice", ns("gone-shop", &orphan)), "the parent is gone");
        assert!(!member_reads("alice", ns("other", &empty), Some(team_meta)), "a parent it does not name");
    }
}
