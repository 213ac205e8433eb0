//! Label selectors of the contracts (`persys.common.v1.LabelSelector`), matched against an
//! object's labels the way Kubernetes matches them. One implementation for the scheduler's
//! placement constraints and the services' list filters.

use persys_proto::common::v1::{LabelSelector, LabelSelectorOperator, LabelSelectorRequirement};

/// Whether the labels that `label` looks up satisfy one requirement. An unspecified operator
/// matches nothing (requests carrying one are refused before they get here).
pub fn requirement_matches<'a>(label: impl Fn(&str) -> Option<&'a String>, req: &LabelSelectorRequirement) -> bool {
    let value = label(&req.key);
    match LabelSelectorOperator::try_from(req.operator).unwrap_or(LabelSelectorOperator::Unspecified) {
        LabelSelectorOperator::In => value.is_some_and(|v| req.values.contains(v)),
        LabelSelectorOperator::NotIn => value.is_none_or(|v| !req.values.contains(v)),
        LabelSelectorOperator::Exists => value.is_some(),
        LabelSelectorOperator::DoesNotExist => value.is_none(),
        LabelSelectorOperator::Unspecified => false,
    }
}

/// Whether the labels satisfy every `match_labels` pair and every requirement of `selector`.
pub fn selector_matches<'a>(label: impl Fn(&str) -> Option<&'a String> + Copy, selector: &LabelSelector) -> bool {
    selector.match_labels.iter().all(|(k, v)| label(k) == Some(v))
        && selector.match_expressions.iter().all(|r| requirement_matches(label, r))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn req(key: &str, op: LabelSelectorOperator, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op as i32,
            values: values.iter().map(|v| (*v).into()).collect(),
        }
    }

    #[test]
    fn operators_match_as_kubernetes_does() {
        let labels = BTreeMap::from([("tier".to_owned(), "web".to_owned())]);
        let get = |k: &str| labels.get(k);
        assert!(requirement_matches(get, &req("tier", LabelSelectorOperator::In, &["web", "api"])));
        assert!(!requirement_matches(get, &req("tier", LabelSelectorOperator::NotIn, &["web"])));
        assert!(requirement_matches(get, &req("zone", LabelSelectorOperator::NotIn, &["a"])), "absent is not in");
        assert!(requirement_matches(get, &req("tier", LabelSelectorOperator::Exists, &[])));
        assert!(requirement_matches(get, &req("zone", LabelSelectorOperator::DoesNotExist, &[])));
        assert!(!requirement_matches(get, &req("tier", LabelSelectorOperator::Unspecified, &[])));
        let selector = LabelSelector {
            match_labels: [("tier".to_owned(), "web".to_owned())].into(),
            match_expressions: vec![req("zone", LabelSelectorOperator::DoesNotExist, &[])],
        };
        assert!(selector_matches(get, &selector));
        assert!(selector_matches(get, &LabelSelector::default()), "the empty selector matches everything");
        let other =
            LabelSelector { match_labels: [("tier".to_owned(), "db".to_owned())].into(), ..LabelSelector::default() };
        assert!(!selector_matches(get, &other));
    }
}
