//! The monitoring assets, without a cluster: the alert rules
//! (`charts/suyun/files/suyun-alerts.yaml`) pass `promtool check rules` and their unit tests
//! (`tests/monitoring/alerts_test.yaml`, `promtool test rules`); every alert has a test case
//! where it fires and one where it does not, and a runbook section in `docs/monitoring.md`; the
//! Grafana dashboard (`charts/suyun/files/suyun-dashboard.json`) is well formed; its queries and
//! those of the cookbook in `docs/monitoring.md` parse; and every PromQL expression of the
//! three uses only metrics the operator or the apiserver exports.
//!
//! promtool comes from Debian's `prometheus` package (`tests/cluster/prereqs` installs it);
//! `PROMTOOL` overrides the binary. A missing promtool fails the tests, it does not skip them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use suyun_tests::repo_root;

/// Prefix of every `runbook_url`: the project's canonical location of docs/monitoring.md.
const RUNBOOK_BASE: &str = "https://github.com/suyun-io/suyun/blob/main/docs/monitoring.md#";

/// The alerts issue 6 asks for; the rules file may have more.
const REQUIRED_ALERTS: [&str; 6] = [
    "SuyunNodeUtilizationHigh",
    "SuyunCapacityExhausted",
    "SuyunWaveFailureBudgetExceeded",
    "SuyunWaveStalled",
    "SuyunStatusStoreStale",
    "SuyunOperatorNoLeader",
];

/// The alerts of capacity governance (city budgets, data residency, forecasts;
/// docs/governance.md).
const GOVERNANCE_ALERTS: [&str; 4] = [
    "SuyunCityBudgetNearlyExhausted",
    "SuyunCityBudgetRunsOutSoon",
    "SuyunResidencyStranded",
    "SuyunNodeRunsOutWithinAQuarter",
];

fn rules_file() -> PathBuf {
    repo_root().join("charts/suyun/files/suyun-alerts.yaml")
}

fn rule_tests_file() -> PathBuf {
    repo_root().join("tests/monitoring/alerts_test.yaml")
}

fn dashboard_file() -> PathBuf {
    repo_root().join("charts/suyun/files/suyun-dashboard.json")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn yaml(path: &Path) -> Yaml {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

fn dashboard() -> Json {
    let path = dashboard_file();
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Runs promtool; returns whether it exited 0 and what it printed.
fn promtool(args: &[&str]) -> (bool, String) {
    let bin = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let out = Command::new(&bin).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {bin} ({e}): install it with tests/cluster/prereqs (Debian package prometheus)")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn str_of<'a>(v: &'a Yaml, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Yaml::as_str)
}

/// One alerting rule of the rules file.
#[derive(Debug)]
struct Alert {
    name: String,
    expr: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn string_map(v: Option<&Yaml>) -> BTreeMap<String, String> {
    let Some(Yaml::Mapping(m)) = v else { return BTreeMap::new() };
    m.iter()
        .map(|(k, v)| {
            let k = k.as_str().expect("string keys").to_owned();
            let v = v.as_str().unwrap_or_else(|| panic!("{k}: value is not a string: {v:?}")).to_owned();
            (k, v)
        })
        .collect()
}

/// Every alerting rule of the rules file (recording rules are not expected and are refused).
fn alerts() -> Vec<Alert> {
    let doc = yaml(&rules_file());
    let groups = doc.get("groups").and_then(Yaml::as_sequence).expect("a top-level `groups:` list");
    let mut out = Vec::new();
    for group in groups {
        let rules = group.get("rules").and_then(Yaml::as_sequence).expect("every group has rules");
        for rule in rules {
            let name = str_of(rule, "alert").unwrap_or_else(|| panic!("not an alerting rule: {rule:?}"));
            out.push(Alert {
                name: name.to_owned(),
                expr: str_of(rule, "expr").unwrap_or_else(|| panic!("{name}: no expr")).to_owned(),
                labels: string_map(rule.get("labels")),
                annotations: string_map(rule.get("annotations")),
            });
        }
    }
    out
}

/// GitHub's anchor of a Markdown heading: lower case, spaces to hyphens, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn promtool_check_rules_accepts_the_alert_rules() {
    let path = rules_file();
    let (ok, out) = promtool(&["check", "rules", path.to_str().expect("UTF-8 path")]);
    assert!(ok, "promtool check rules failed:\n{out}");
    let rules = alerts().len();
    assert!(out.contains(&format!("SUCCESS: {rules} rules found")), "promtool saw other rules than {rules}:\n{out}");
}

#[test]
fn promtool_unit_tests_of_the_alert_rules_pass() {
    let path = rule_tests_file();
    let (ok, out) = promtool(&["test", "rules", path.to_str().expect("UTF-8 path")]);
    assert!(ok, "promtool test rules failed:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_fires_and_stays_silent_in_some_test_case_and_has_a_runbook() {
    let alerts = alerts();
    let names: BTreeSet<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
    for required in REQUIRED_ALERTS {
        assert!(names.contains(required), "alert {required} missing from the rules file");
    }

    // Metadata: severity, annotations, runbook sections that exist.
    let docs = read(&repo_root().join("docs/monitoring.md"));
    let anchors: BTreeSet<String> =
        docs.lines().filter_map(|l| l.strip_prefix('#')).map(|h| anchor(h.trim_start_matches('#'))).collect();
    for a in &alerts {
        let severity = a.labels.get("severity").map(String::as_str);
        assert!(matches!(severity, Some("critical" | "warning")), "{}: severity {severity:?}", a.name);
        for key in ["summary", "description", "runbook_url"] {
            assert!(a.annotations.get(key).is_some_and(|v| !v.trim().is_empty()), "{}: no {key} annotation", a.name);
        }
        let url = &a.annotations["runbook_url"];
        let fragment = url.strip_prefix(RUNBOOK_BASE).unwrap_or_else(|| panic!("{}: runbook_url {url}", a.name));
        assert_eq!(fragment, a.name.to_lowercase(), "{}: the runbook section is named after the alert", a.name);
        assert!(anchors.contains(fragment), "{}: docs/monitoring.md has no heading with anchor #{fragment}", a.name);
    }

    // Test cases: per alert name, one where it fires and one where it must not.
    let tests = yaml(&rule_tests_file());
    let files: Vec<&str> = tests
        .get("rule_files")
        .and_then(Yaml::as_sequence)
        .expect("rule_files")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let resolved: Vec<PathBuf> = files.iter().map(|f| rule_tests_file().parent().unwrap().join(f)).collect();
    assert!(
        resolved.iter().any(|p| p.canonicalize().ok() == rules_file().canonicalize().ok()),
        "the unit tests do not load {}: {files:?}",
        rules_file().display()
    );
    // Per alert name: the label sets expected to fire, and the number of silent cases.
    let mut firing: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    let mut silent: BTreeMap<String, usize> = BTreeMap::new();
    let groups = tests.get("tests").and_then(Yaml::as_sequence).expect("tests");
    for group in groups {
        for case in group.get("alert_rule_test").and_then(Yaml::as_sequence).into_iter().flatten() {
            let name = str_of(case, "alertname").expect("alertname").to_owned();
            assert!(names.contains(name.as_str()), "a test case names {name}, which is not an alert of the rules file");
            let expected = case.get("exp_alerts").and_then(Yaml::as_sequence).cloned().unwrap_or_default();
            if expected.is_empty() {
                *silent.entry(name).or_default() += 1;
            } else {
                firing.entry(name).or_default().extend(expected.iter().map(|e| string_map(e.get("exp_labels"))));
            }
        }
    }
    // Every rule fires in some case (several rules may share a name: an expected alert belongs
    // to a rule when it carries that rule's static labels), and every alert name stays silent
    // in some case.
    for a in &alerts {
        let fired = firing
            .get(&a.name)
            .into_iter()
            .flatten()
            .any(|labels| a.labels.iter().all(|(k, v)| labels.get(k) == Some(v)));
        assert!(fired, "no test case where {} with labels {:?} fires", a.name, a.labels);
        assert!(silent.get(&a.name).is_some_and(|n| *n > 0), "no test case where {} stays silent", a.name);
    }
}

#[test]
fn the_governance_alerts_are_in_the_rules_file_as_warnings() {
    let alerts = alerts();
    for name in GOVERNANCE_ALERTS {
        let alert = alerts.iter().find(|a| a.name == name).unwrap_or_else(|| panic!("alert {name} missing"));
        assert_eq!(alert.labels.get("severity").map(String::as_str), Some("warning"), "{name}");
    }
}

/// Every panel of the dashboard, rows' nested panels included.
fn panels(dashboard: &Json) -> Vec<&Json> {
    fn walk<'a>(list: &'a Json, out: &mut Vec<&'a Json>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(nested) = p.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn is_row(panel: &Json) -> bool {
    panel["type"] == "row"
}

fn uses_datasource_variable(v: &Json) -> bool {
    v["uid"] == "${datasource}" && v["type"] == "prometheus"
}

#[test]
fn the_dashboard_is_well_formed() {
    let d = dashboard();
    assert_eq!(d["uid"], "suyun-overview");
    assert!(d["title"].as_str().is_some_and(|t| t.contains("Suyun") && t.contains("苏云")), "title {}", d["title"]);
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion {}", d["schemaVersion"]);

    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let datasource = vars.iter().find(|v| v["name"] == "datasource").expect("a `datasource` variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert!(uses_datasource_variable(&v["datasource"]), "variable {} does not query ${{datasource}}", v["name"]);
    }
    for wanted in ["region", "wave"] {
        assert!(vars.iter().any(|v| v["name"] == wanted), "no `{wanted}` variable");
    }

    let all = panels(&d);
    let mut ids = BTreeSet::new();
    let mut graphs = 0;
    let mut nested = 0;
    for p in &all {
        let title = p["title"].as_str().unwrap_or_default();
        let id = p["id"].as_u64().unwrap_or_else(|| panic!("panel {title:?} has no numeric id"));
        assert!(ids.insert(id), "panel id {id} ({title:?}) is used twice");
        let pos = &p["gridPos"];
        for key in ["x", "y", "w", "h"] {
            assert!(pos[key].is_u64(), "panel {title:?}: gridPos.{key} missing");
        }
        let (x, w) = (pos["x"].as_u64().unwrap(), pos["w"].as_u64().unwrap());
        assert!(w > 0 && x + w <= 24, "panel {title:?} does not fit the 24-column grid: x {x}, w {w}");
        assert!(!title.is_empty(), "panel {id} has no title");
        if is_row(p) {
            nested += p["panels"].as_array().map_or(0, Vec::len);
            continue;
        }
        graphs += 1;
        assert!(uses_datasource_variable(&p["datasource"]), "panel {title:?}: datasource is not ${{datasource}}");
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("panel {title:?} has no targets"));
        assert!(!targets.is_empty(), "panel {title:?} has no targets");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(uses_datasource_variable(&t["datasource"]), "panel {title:?}: a target's datasource");
            assert!(t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()), "panel {title:?}: empty expr");
            assert!(refs.insert(t["refId"].as_str().expect("refId")), "panel {title:?}: refId used twice");
        }
    }
    assert!(graphs >= 20, "only {graphs} panels");
    assert!(nested > 0, "no collapsed row with nested panels: the walk over rows would go untested");
}

/// Every PromQL expression of the dashboard: panel targets (rows included) and query
/// variables, with their title for messages.
fn dashboard_exprs() -> Vec<(String, String)> {
    let d = dashboard();
    let mut out = Vec::new();
    for p in panels(&d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((format!("panel {:?}", p["title"]), t["expr"].as_str().unwrap_or_default().to_owned()));
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten().filter(|v| v["type"] == "query") {
        let q = v["query"]["query"].as_str().or(v["query"].as_str()).unwrap_or_default();
        let q = q.trim();
        // label_values(metric, label) names its metric; the rest is PromQL.
        let inner = q.strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')).map(|r| {
            let (metric, _label) = r.rsplit_once(',').expect("label_values(metric, label)");
            metric.trim().to_owned()
        });
        out.push((format!("variable {}", v["name"]), inner.unwrap_or_else(|| q.to_owned())));
    }
    out
}

/// The expressions of the ```` ```promql ```` blocks of docs/monitoring.md: one per line, a line
/// that starts with white space continuing the one before; `#` lines are comments.
fn cookbook_exprs() -> Vec<String> {
    let docs = read(&repo_root().join("docs/monitoring.md"));
    let mut out: Vec<String> = Vec::new();
    let mut inside = false;
    for line in docs.lines() {
        if line.starts_with("```") {
            inside = line.trim() == "```promql";
            continue;
        }
        if !inside || line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match out.last_mut() {
            Some(last) if line.starts_with(char::is_whitespace) => {
                last.push(' ');
                last.push_str(line.trim());
            }
            _ => out.push(line.trim().to_owned()),
        }
    }
    out
}

/// Grafana variables replaced so that an expression is plain PromQL.
fn without_variables(expr: &str) -> String {
    let mut out = expr.to_owned();
    for v in ["$__rate_interval", "$__interval", "$__range"] {
        out = out.replace(v, "5m");
    }
    // Every other variable of this dashboard is a regex label value.
    let mut plain = String::new();
    let mut chars = out.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            plain.push(c);
            continue;
        }
        if chars.peek() == Some(&'{') {
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
            }
        } else {
            while chars.peek().is_some_and(|c| c.is_alphanumeric() || *c == '_') {
                chars.next();
            }
        }
        plain.push_str(".*");
    }
    plain
}

/// Aggregation operators: followed by `by`/`without` or by their parameters.
const AGGREGATIONS: [&str; 12] =
    ["sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
/// Other keywords and literals.
const KEYWORDS: [&str; 8] = ["and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"];

/// The metric names an expression selects. Label matchers (`{…}`), string literals, range and
/// subquery durations (`[…]`), label lists of `by`/`on`/… and function names are skipped;
/// every other identifier is a metric name. Panics on an expression it cannot tokenise.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |i: &mut usize, close: char| {
        while *i < chars.len() && chars[*i] != close {
            if chars[*i] == '"' || chars[*i] == '\'' || chars[*i] == '`' {
                let quote = chars[*i];
                *i += 1;
                while *i < chars.len() && chars[*i] != quote {
                    *i += if chars[*i] == '\\' { 2 } else { 1 };
                }
            }
            *i += 1;
        }
        assert!(*i < chars.len(), "unbalanced {close:?} in {expr:?}");
        *i += 1;
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                skip_to(&mut i, c);
            }
            '{' => {
                i += 1;
                skip_to(&mut i, '}');
            }
            '[' => {
                i += 1;
                skip_to(&mut i, ']');
            }
            c if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                // A number (1e3, 0.85, 0x1f) or a duration (5m).
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let lower = word.to_lowercase();
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if chars.get(next) == Some(&'(') {
                        i = next + 1;
                        skip_to(&mut i, ')');
                    }
                } else if chars.get(next) == Some(&'(')
                    || AGGREGATIONS.contains(&lower.as_str())
                    || KEYWORDS.contains(&lower.as_str())
                {
                    // A function, an aggregation or a keyword.
                } else {
                    names.insert(word);
                }
            }
            '$' => panic!("Grafana variable left in {expr:?}"),
            _ => i += 1,
        }
    }
    names
}

#[test]
fn the_metric_name_tokenizer_finds_selectors_and_nothing_else() {
    let found = metric_names(
        r#"histogram_quantile(0.9, sum by (phase, le) (rate(suyun_phase_duration_seconds_bucket{phase!~"x|suyun_fake"}[1h])))
           / on (wave) group_left (tier) max without (instance) (suyun_wave_active offset 5m) > bool 0.5e1
           or absent(up{job="suyun-apiserver"}) and topk(3, suyun_systems) unless time() - suyun_leader"#,
    );
    let want: BTreeSet<String> =
        ["suyun_phase_duration_seconds_bucket", "suyun_wave_active", "up", "suyun_systems", "suyun_leader"]
            .map(String::from)
            .into();
    assert_eq!(found, want);
    assert_eq!(metric_names(&without_variables(r#"max by (node) (suyun_node_ready{region_code=~"$region"})"#)), {
        let mut s = BTreeSet::new();
        s.insert("suyun_node_ready".to_owned());
        s
    });
}

#[test]
fn every_expression_uses_only_metrics_the_operator_or_the_apiserver_exports() {
    let operator = suyun_operator::metrics::exported_metric_names();
    let apiserver = suyun_apiserver::metrics::exported_metric_names();
    for (who, names, histogram) in [
        ("operator", &operator, "suyun_phase_duration_seconds"),
        ("apiserver", &apiserver, "suyun_apiserver_request_duration_seconds"),
    ] {
        for suffix in ["_bucket", "_sum", "_count"] {
            let series = format!("{histogram}{suffix}");
            assert!(names.contains(&series), "the {who}'s exported names lack {series}: {names:?}");
        }
        assert!(!names.iter().any(|n| n == histogram), "{histogram} is not a series of its own: {names:?}");
    }
    let mut exported: BTreeSet<String> = operator.into_iter().chain(apiserver).collect();
    // Prometheus' own per-target series.
    exported.insert("up".into());

    let alerts = alerts();
    let mut exprs: Vec<(String, String)> =
        alerts.iter().map(|a| (format!("alert {}", a.name), a.expr.clone())).collect();
    let from_rules = exprs.len();
    let from_dashboard = dashboard_exprs();
    let dashboard_count = from_dashboard.len();
    exprs.extend(from_dashboard.into_iter().map(|(w, e)| (w, without_variables(&e))));
    let cookbook = cookbook_exprs();
    let cookbook_count = cookbook.len();
    exprs.extend(cookbook.into_iter().map(|e| ("docs/monitoring.md cookbook".to_owned(), e)));
    assert!(from_rules > REQUIRED_ALERTS.len(), "only {from_rules} rule expressions found");
    assert!(dashboard_count >= 40, "only {dashboard_count} dashboard expressions found");
    assert!(cookbook_count >= 10, "only {cookbook_count} cookbook expressions found");

    let mut unknown = Vec::new();
    let mut used = BTreeSet::new();
    for (what, expr) in &exprs {
        let names = metric_names(expr);
        assert!(
            names.iter().any(|n| n.starts_with("suyun_") || n == "up"),
            "{what}: {expr:?} selects no suyun_ metric (nor up)"
        );
        for n in names {
            if !exported.contains(&n) {
                unknown.push(format!("{what}: {n}"));
            }
            used.insert(n);
        }
    }
    // Query templates in annotations name metrics too.
    for a in &alerts {
        for text in a.annotations.values() {
            for (i, _) in text.match_indices("suyun_") {
                let name: String =
                    text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
                if !exported.contains(&name) {
                    unknown.push(format!("alert {} annotation: {name}", a.name));
                }
            }
        }
    }
    assert!(unknown.is_empty(), "metrics that nothing exports:\n{}", unknown.join("\n"));
    assert!(used.len() >= 25, "the expressions use only {} metrics: {used:?}", used.len());
}

#[test]
fn every_dashboard_and_cookbook_query_parses() {
    // promtool has no query checker; recording rules of the expressions are parsed with the
    // rules file checker instead.
    let exprs: Vec<String> =
        dashboard_exprs().into_iter().map(|(_, e)| without_variables(&e)).chain(cookbook_exprs()).collect();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expr = serde_json::to_string(expr).expect("a JSON string is a YAML string");
        rules.push_str(&format!("      - record: dashboard:expr_{i}\n        expr: {expr}\n"));
    }
    let dir = std::env::temp_dir().join(format!("suyun-monitoring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dashboard-rules.yaml");
    std::fs::write(&path, rules).unwrap();
    let (ok, out) = promtool(&["check", "rules", path.to_str().expect("UTF-8 path")]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "a dashboard or cookbook query does not parse:\n{out}");
    assert!(out.contains(&format!("SUCCESS: {} rules found", exprs.len())), "{out}");
}
