//! Data residency: which nodes may hold data of each classification.
//!
//! Every rule naming a classification applies (they are intersected). A classification no
//! rule names keeps the built-in default: Sensitive data stays on a node of its own city
//! ([`ResidencyRule::builtin`]); Public and Internal data are not restricted beyond locality.
//! A system with a recorded waiver is not restricted at all.

use crate::model::{Classification, Node, RegionScope, ResidencyRule};

/// The rules in force, by classification.
#[derive(Debug)]
pub struct Rules<'a> {
    by_class: [Vec<Rule<'a>>; 3],
}

/// A rule, borrowed from the input or the built-in default.
#[derive(Debug, Clone)]
pub enum Rule<'a> {
    /// From the input.
    Input(&'a ResidencyRule),
    /// The built-in default.
    Builtin(ResidencyRule),
}

impl Rule<'_> {
    /// The rule itself.
    pub fn rule(&self) -> &ResidencyRule {
        match self {
            Rule::Input(r) => r,
            Rule::Builtin(r) => r,
        }
    }
}

fn slot(c: Classification) -> usize {
    match c {
        Classification::Public => 0,
        Classification::Internal => 1,
        Classification::Sensitive => 2,
    }
}

impl<'a> Rules<'a> {
    /// The rules of `input`, sorted by name, plus the built-in default where no rule names
    /// Sensitive.
    pub fn new(input: &'a [ResidencyRule]) -> Rules<'a> {
        let mut by_class: [Vec<Rule<'a>>; 3] = Default::default();
        let mut sorted: Vec<&ResidencyRule> = input.iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        for r in sorted {
            by_class[slot(r.classification)].push(Rule::Input(r));
        }
        if by_class[slot(Classification::Sensitive)].is_empty() {
            by_class[slot(Classification::Sensitive)].push(Rule::Builtin(ResidencyRule::builtin()));
        }
        Rules { by_class }
    }

    /// The first rule (by name) that forbids data of `class`, owned by a tenant of region
    /// `tenant_region`, on `node`; `None` when every rule allows it.
    pub fn refusing(&self, class: Classification, tenant_region: &str, node: &Node) -> Option<&ResidencyRule> {
        self.by_class[slot(class)].iter().map(Rule::rule).find(|r| !allows(r, tenant_region, node))
    }
}

/// Whether `rule` lets data of a tenant in `tenant_region` live on `node`.
pub fn allows(rule: &ResidencyRule, tenant_region: &str, node: &Node) -> bool {
    if !rule.tiers.is_empty() && !rule.tiers.contains(&node.tier) {
        return false;
    }
    let same = |digits: usize| match (tenant_region.get(..digits), node.region_code.get(..digits)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    };
    match rule.region {
        RegionScope::OwnCity => same(4),
        RegionScope::OwnProvince => same(2),
        RegionScope::Anywhere => true,
    }
}

/// What a rule says, for refusals: `OwnCity (3205xx) nodes, City tier`.
pub fn describe(rule: &ResidencyRule, tenant_region: &str) -> String {
    let prefix = |digits: usize| tenant_region.get(..digits).unwrap_or(tenant_region).to_owned();
    let mut text = match rule.region {
        RegionScope::OwnCity => format!("only nodes of its own city ({}xx)", prefix(4)),
        RegionScope::OwnProvince => format!("only nodes of its own province ({}xxxx)", prefix(2)),
        RegionScope::Anywhere => "any region".to_owned(),
    };
    if !rule.tiers.is_empty() {
        let tiers: Vec<&str> = rule
            .tiers
            .iter()
            .map(|t| match t {
                crate::model::Tier::Provincial => "Provincial",
                crate::model::Tier::City => "City",
            })
            .collect();
        text.push_str(&format!(", tier {}", tiers.join(" or ")));
    }
    text
}
