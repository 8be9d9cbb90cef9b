//! Label selectors evaluated in memory (wave membership): `matchLabels` and `matchExpressions`
//! with the operators In, NotIn, Exists and DoesNotExist, as Kubernetes defines them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` satisfy `selector`. An empty selector matches everything; an unknown
/// operator matches nothing (the apiserver refuses those in its own types, so this only guards
/// hand-written input).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| (*v).into()).collect()),
        }
    }

    #[test]
    fn match_labels_and_expressions_combine_with_and() {
        let sel = LabelSelector {
            match_labels: Some(BTreeMap::from([("suyun.io/wave".into(), "wave-1".into())])),
            match_expressions: Some(vec![expr("tier", "NotIn", &["gold"])]),
        };
        assert!(matches(&sel, &labels(&[("suyun.io/wave", "wave-1")])));
        assert!(matches(&sel, &labels(&[("suyun.io/wave", "wave-1"), ("tier", "silver")])));
        assert!(!matches(&sel, &labels(&[("suyun.io/wave", "wave-1"), ("tier", "gold")])));
        assert!(!matches(&sel, &labels(&[("suyun.io/wave", "wave-2")])));
    }

    #[test]
    fn every_operator() {
        let l = labels(&[("a", "1")]);
        let one = |e| LabelSelector { match_expressions: Some(vec![e]), match_labels: None };
        assert!(matches(&one(expr("a", "In", &["1", "2"])), &l));
        assert!(!matches(&one(expr("a", "In", &["2"])), &l));
        assert!(matches(&one(expr("a", "Exists", &[])), &l));
        assert!(!matches(&one(expr("b", "Exists", &[])), &l));
        assert!(matches(&one(expr("b", "DoesNotExist", &[])), &l));
        assert!(matches(&one(expr("b", "NotIn", &["1"])), &l));
        assert!(!matches(&one(expr("a", "Bogus", &[])), &l));
        assert!(matches(&LabelSelector::default(), &l), "empty selector matches all");
    }
}
