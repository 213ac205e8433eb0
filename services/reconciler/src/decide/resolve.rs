//! Which workload a persona describes. Dorgu's chain, rung by rung: the
//! `app.kubernetes.io/name` label, then the `app` label (on the workload or its pod template),
//! then the workload's name, then its selector's `matchLabels`. The first rung with exactly one
//! match wins; several matches on one rung are reported as ambiguous instead of taking the
//! first (Dorgu v0.2 took the first one a List returned).

use std::collections::BTreeMap;

/// What the resolution needs to know of a Deployment or StatefulSet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidate {
    /// `Deployment` or `StatefulSet`.
    pub kind: String,
    /// Name (the namespace is the persona's).
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.template.metadata.labels`.
    pub template_labels: BTreeMap<String, String>,
    /// `spec.selector.matchLabels`.
    pub selector: BTreeMap<String, String>,
}

/// The rungs, in order.
pub const RUNGS: [&str; 4] = ["app.kubernetes.io/name", "app", "name", "selector"];

/// The outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// One workload, and the rung that found it.
    Found {
        /// Its index in the candidates.
        index: usize,
        /// The rung.
        rung: &'static str,
    },
    /// Several on the first rung that matched anything.
    Ambiguous {
        /// The rung.
        rung: &'static str,
        /// `Kind/name` of each, sorted.
        candidates: Vec<String>,
    },
    /// Nothing on any rung.
    NotFound,
}

fn matches(c: &Candidate, rung: &str, app: &str) -> bool {
    let label = |key: &str| {
        c.labels.get(key).map(String::as_str) == Some(app)
            || c.template_labels.get(key).map(String::as_str) == Some(app)
    };
    match rung {
        "app.kubernetes.io/name" | "app" => label(rung),
        "name" => c.name == app,
        _ => ["app.kubernetes.io/name", "app"].iter().any(|k| c.selector.get(*k).map(String::as_str) == Some(app)),
    }
}

/// Resolves the persona whose `spec.name` is `app` among `candidates` (its namespace's
/// Deployments and StatefulSets).
pub fn resolve(app: &str, candidates: &[Candidate]) -> Resolution {
    for rung in RUNGS {
        let hits: Vec<usize> = (0..candidates.len()).filter(|&i| matches(&candidates[i], rung, app)).collect();
        match hits.as_slice() {
            [] => continue,
            [index] => return Resolution::Found { index: *index, rung },
            many => {
                let mut names: Vec<String> =
                    many.iter().map(|&i| format!("{}/{}", candidates[i].kind, candidates[i].name)).collect();
                names.sort();
                return Resolution::Ambiguous { rung, candidates: names };
            }
        }
    }
    Resolution::NotFound
}

/// Whether a workload could belong to the persona named `app` on any rung: which personas a
/// workload change should wake up.
pub fn could_match(app: &str, candidate: &Candidate) -> bool {
    RUNGS.iter().any(|rung| matches(candidate, rung, app))
}

/// The message for [`Resolution::NotFound`]: every rung tried.
pub fn not_found_message(app: &str) -> String {
    format!(
        "no Deployment or StatefulSet matched: tried label app.kubernetes.io/name={app}, label app={app}, name {app}, \
         and a selector on either label"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(kind: &str, name: &str, labels: &[(&str, &str)]) -> Candidate {
        Candidate {
            kind: kind.into(),
            name: name.into(),
            labels: labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            ..Candidate::default()
        }
    }

    #[test]
    fn earlier_rungs_win_over_later_ones() {
        let cs = vec![
            cand("Deployment", "shop", &[]),
            cand("Deployment", "shop-v2", &[("app", "shop")]),
            cand("Deployment", "web", &[("app.kubernetes.io/name", "shop")]),
        ];
        assert_eq!(resolve("shop", &cs), Resolution::Found { index: 2, rung: "app.kubernetes.io/name" });
        assert_eq!(resolve("shop", &cs[..2]), Resolution::Found { index: 1, rung: "app" });
        assert_eq!(resolve("shop", &cs[..1]), Resolution::Found { index: 0, rung: "name" });
    }

    #[test]
    fn template_labels_and_selectors_count() {
        let mut t = cand("StatefulSet", "db-0", &[]);
        t.template_labels.insert("app".into(), "db".into());
        assert_eq!(resolve("db", std::slice::from_ref(&t)), Resolution::Found { index: 0, rung: "app" });
        let mut s = cand("Deployment", "x", &[]);
        s.selector.insert("app.kubernetes.io/name".into(), "db".into());
        assert_eq!(resolve("db", &[s]), Resolution::Found { index: 0, rung: "selector" });
    }

    #[test]
    fn two_on_one_rung_is_ambiguous_not_the_first() {
        let cs = vec![
            cand("StatefulSet", "b", &[("app.kubernetes.io/name", "shop")]),
            cand("Deployment", "a", &[("app.kubernetes.io/name", "shop")]),
            cand("Deployment", "shop", &[]),
        ];
        assert_eq!(
            resolve("shop", &cs),
            Resolution::Ambiguous {
                rung: "app.kubernetes.io/name",
                candidates: vec!["Deployment/a".into(), "StatefulSet/b".into()]
            }
        );
    }

    #[test]
    fn nothing_matches_and_prefixes_do_not_count() {
        let cs = vec![cand("Deployment", "shop-api", &[("app", "shop-api")])];
        assert_eq!(resolve("shop", &cs), Resolution::NotFound);
        assert!(!could_match("shop", &cs[0]));
        assert!(could_match("shop-api", &cs[0]));
        assert!(not_found_message("shop").contains("app.kubernetes.io/name=shop"));
    }
}
