//! City budgets over the REST API, against the real apiserver and the real status store: the
//! budget records the operator builds (`suyun_operator::readmodel::budgets`) from a planner run
//! over the synthetic Jiangsu set with CityBudgets for 南京 (320100) and 苏州 (320500), published
//! into the test cluster's etcd next to the rest of the read-model. Each city reads its own
//! budget, with the figures published, and nothing of the other's (an item of the other city is
//! answered exactly as a missing one); the province reads both; a change or a deletion reaches
//! the API, and another city's never changes what a city sees.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use suyun_operator::store::{Change, RecordKey};
use suyun_planner::model::{CityBudget, Lending, Limit, NodeShare, PlanInput, TenantLevel};
use suyun_store::readmodel::{BudgetRecord, Record};
use suyun_tests::apiserver::{TestServer, publish};
use suyun_tests::etcd::unique_prefix;
use suyun_tests::https::{Caller, Reply};
use suyun_tests::readmodel::records_from_plan;

const NANJING: &str = "320100";
const SUZHOU: &str = "320500";

/// A budget for the city `code`: its own node whole, a tenth of the provincial node, lending
/// a third of each department's quota and borrowing up to a fifth on top.
fn city_budget(input: &PlanInput, code: &str, display: &str) -> CityBudget {
    let share = |name: &str, tenths: u64| {
        let node = input.nodes.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("node {name}"));
        let a = node.allocatable;
        NodeShare {
            node: name.to_owned(),
            limit: Limit { cpu: a.cpu * tenths / 10, memory: a.memory * tenths / 10, storage: a.storage * tenths / 10 },
        }
    };
    CityBudget {
        name: format!("budget-{code}"),
        region_code: code.to_owned(),
        display_name: display.to_owned(),
        nodes: vec![share(&format!("cn-{code}"), 10), share("cn-320000", 1)],
        lending: Lending { lend_percent: 33, borrow_percent: 20, departments: Vec::new() },
    }
}

/// The published budgets of 南京 and 苏州 (in that order) and every record of the store.
fn read_model() -> (BudgetRecord, BudgetRecord, Vec<Record>) {
    let mut input = suyun_planner::synthetic::jiangsu(7);
    input.budgets = vec![city_budget(&input, NANJING, "南京市"), city_budget(&input, SUZHOU, "苏州市")];
    // The synthetic quotas leave room: cut the first department of each city to nine tenths of
    // what it uses, so that it borrows from the others and there is lending to show.
    let first = suyun_planner::plan(&input);
    for code in [NANJING, SUZHOU] {
        let tenant = input.tenants.iter_mut().find(|t| t.region_code == code).expect("a department");
        let used = first.tenants.iter().find(|a| a.name == tenant.name).expect("its account").used;
        tenant.quota.cpu = used.cpu * 9 / 10;
        tenant.quota.memory = used.memory * 9 / 10;
        tenant.quota.storage = used.storage * 9 / 10;
    }
    let plan = suyun_planner::plan(&input);
    let budgets = suyun_operator::readmodel::budgets(&plan, &[]);
    let of = |code: &str| budgets.iter().find(|b| b.region_code == code).cloned().expect("the budget is in force");
    let (nanjing, suzhou) = (of(NANJING), of(SUZHOU));
    // The figures are the plan's, and not empty: the test compares something.
    for budget in [&nanjing, &suzhou] {
        let departments = input
            .tenants
            .iter()
            .filter(|t| t.level != TenantLevel::Provincial && t.region_code[..4] == budget.region_code[..4])
            .count();
        assert_eq!(budget.departments.len(), departments, "{}: every City and County tenant", budget.display_name);
        assert!(budget.nodes.iter().any(|n| n.used.cpu_millis > 0), "{budget:?}");
        assert!(budget.departments.iter().any(|d| d.used.cpu_millis > 0), "{budget:?}");
        assert!(budget.borrowed.cpu_millis > 0 && budget.lendable.cpu_millis > 0, "{budget:?}");
        assert!(budget.departments.iter().any(|d| d.lent.cpu_millis > 0), "{budget:?}");
    }
    let mut records = records_from_plan(&input);
    records.extend(budgets.into_iter().map(Record::Budget));
    (nanjing, suzhou, records)
}

fn value(budget: &BudgetRecord) -> Value {
    serde_json::to_value(budget).unwrap()
}

async fn get(caller: &Caller, path: &str) -> Reply {
    caller.get(path).await.unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
}

/// `GET path` as `caller` until `check` holds for the reply (the store is read through a watch).
async fn until(caller: &Caller, path: &str, check: impl Fn(&Reply) -> bool) -> Reply {
    suyun_tests::eventually(Duration::from_secs(10), || async {
        let reply = get(caller, path).await;
        anyhow::ensure!(check(&reply), "GET {path}: {} {}", reply.status, reply.text());
        Ok(reply)
    })
    .await
    .unwrap()
}

/// The problem answered for `path`, with the name asked for replaced by `<name>`: what is left
/// must not tell another city's budget from a missing one.
fn anonymised(reply: &Reply, name: &str) -> (StatusCode, Option<String>, Option<String>, Value) {
    let mut body = reply.json();
    body["detail"] = json!(body["detail"].as_str().unwrap_or_default().replace(name, "<name>"));
    (reply.status, reply.header("content-type"), reply.header("etag"), body)
}

#[tokio::test]
async fn each_city_reads_its_own_budget_with_the_published_figures() {
    let (nanjing_budget, suzhou_budget, records) = read_model();
    let prefix = unique_prefix("api-budgets");
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let mut publisher = publish(&endpoint, &prefix, "operator-a", records).await.unwrap();
    let server = TestServer::start(&endpoint, &prefix, 1000).await.unwrap();
    let province = server.with_certificate("province-ops", &["province"]);
    let nanjing = server.with_certificate("nanjing-ops", &[NANJING]);
    let suzhou = server.with_certificate("suzhou-ops", &[SUZHOU]);
    let kunshan = server.with_certificate("kunshan-ops", &["320583"]);

    // Lists: each city its own budget, exactly as published; the province both.
    for (who, caller, own, other) in
        [("南京", &nanjing, &nanjing_budget, &suzhou_budget), ("苏州", &suzhou, &suzhou_budget, &nanjing_budget)]
    {
        let list = get(caller, "/api/v1/budgets").await;
        assert_eq!(list.status, StatusCode::OK, "{who}: {}", list.text());
        assert_eq!(list.json()["items"], json!([value(own)]), "{who}: its own budget, the figures published");
        let item = get(caller, &format!("/api/v1/budgets/{}", own.region_code)).await;
        assert_eq!((item.status, &item.json()["item"]), (StatusCode::OK, &value(own)), "{who}");
        assert!(item.header("etag").is_some());
        // Nothing of the other city in any answer: not its code, name, departments or figures.
        let summary = get(caller, "/api/v1/summary").await;
        for reply in [&list, &item, &summary] {
            let text = reply.text();
            assert!(!text.contains(&other.name) && !text.contains(&other.display_name), "{who}: {text}");
            assert!(!text.contains(&format!("\"regionCode\":\"{}\"", other.region_code)), "{who}: {text}");
            assert!(other.departments.iter().all(|d| !text.contains(&d.tenant)), "{who}: {text}");
        }
        // The summary carries the city's budget at a glance, with the same figures.
        let budgets = summary.json()["item"]["budgets"].clone();
        assert_eq!(budgets.as_array().map(Vec::len), Some(1), "{who}: {budgets}");
        assert_eq!(budgets[0]["regionCode"], own.region_code.as_str());
        assert_eq!(budgets[0]["nodes"], value(own)["nodes"]);
        assert_eq!(
            (&budgets[0]["borrowed"], &budgets[0]["lendable"]),
            (&value(own)["borrowed"], &value(own)["lendable"])
        );
        assert_eq!(budgets[0]["departments"], own.departments.len());

        // The other city's budget is answered exactly as one that does not exist.
        let foreign = get(caller, &format!("/api/v1/budgets/{}", other.region_code)).await;
        let missing = get(caller, "/api/v1/budgets/320900").await;
        assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{who}: {}", foreign.text());
        assert_eq!(anonymised(&foreign, &other.region_code), anonymised(&missing, "320900"), "{who}");
        let asked = get(caller, &format!("/api/v1/budgets?region={}", other.region_code)).await;
        assert_eq!(asked.status, StatusCode::FORBIDDEN, "{who}");
    }
    let all = get(&province, "/api/v1/budgets").await.json();
    assert_eq!(all["items"], json!([value(&nanjing_budget), value(&suzhou_budget)]));
    let one = get(&province, "/api/v1/budgets/320500").await.json();
    assert_eq!(one["item"], value(&suzhou_budget));
    let summary = get(&province, "/api/v1/summary").await.json();
    assert_eq!(summary["item"]["budgets"].as_array().map(Vec::len), Some(2));
    // A county's scope is its own code: its city's budget is not in it.
    assert_eq!(get(&kunshan, "/api/v1/budgets").await.json()["items"], json!([]));
    assert_eq!(get(&kunshan, "/api/v1/budgets/320500").await.status, StatusCode::NOT_FOUND);

    // 苏州's budget changes, then is deleted: 南京's answers do not move (304 on its ETags).
    let nanjing_list = get(&nanjing, "/api/v1/budgets").await.header("etag").unwrap();
    let nanjing_summary = get(&nanjing, "/api/v1/summary").await.header("etag").unwrap();
    let mut changed = suzhou_budget.clone();
    changed.borrowed.cpu_millis += 1000;
    changed.departments[0].borrowed.cpu_millis += 1000;
    publisher.publish([Change::Put(Record::Budget(changed.clone()))]).await.unwrap();
    until(&suzhou, "/api/v1/budgets/320500", |r| r.json()["item"] == value(&changed)).await;
    publisher.publish([Change::Delete(RecordKey::Budget(SUZHOU.to_owned()))]).await.unwrap();
    until(&suzhou, "/api/v1/budgets", |r| r.json()["items"] == json!([])).await;
    assert_eq!(get(&suzhou, "/api/v1/budgets/320500").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&province, "/api/v1/budgets").await.json()["items"], json!([value(&nanjing_budget)]));
    for (path, etag) in [("/api/v1/budgets", &nanjing_list), ("/api/v1/summary", &nanjing_summary)] {
        let reply = nanjing.get_with(path, &[("if-none-match", etag)]).await.unwrap();
        assert_eq!(reply.status, StatusCode::NOT_MODIFIED, "南京 {path} after 苏州's changes: {}", reply.text());
    }

    // 南京's own change reaches 南京.
    let mut mine = nanjing_budget.clone();
    mine.lendable.memory_bytes += 1 << 30;
    publisher.publish([Change::Put(Record::Budget(mine.clone()))]).await.unwrap();
    let reply = until(&nanjing, "/api/v1/budgets", |r| r.json()["items"] == json!([value(&mine)])).await;
    assert_ne!(reply.header("etag").as_ref(), Some(&nanjing_list));
    server.stop().await.unwrap();
}

/// A leader that starts over (reconciles the store against its records) deletes the budget of a
/// city whose CityBudget is gone, as it does nodes, tenants and waves.
#[tokio::test]
async fn reconciling_deletes_the_budgets_that_are_gone() {
    let (nanjing_budget, suzhou_budget, records) = read_model();
    let prefix = unique_prefix("api-budgets-reconcile");
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let publisher = publish(&endpoint, &prefix, "operator-a", records.clone()).await.unwrap();
    let server = TestServer::start(&endpoint, &prefix, 1000).await.unwrap();
    let province = server.with_certificate("province-ops", &["province"]);
    let both = json!([value(&nanjing_budget), value(&suzhou_budget)]);
    assert_eq!(get(&province, "/api/v1/budgets").await.json()["items"], both);
    // The next leader's read-model has no budget for 苏州 any more.
    publisher.into_fence().resign().await.unwrap();
    let without: Vec<Record> =
        records.into_iter().filter(|r| !matches!(r, Record::Budget(b) if b.region_code == SUZHOU)).collect();
    let _publisher = publish(&endpoint, &prefix, "operator-b", without).await.unwrap();
    until(&province, "/api/v1/budgets", |r| r.json()["items"] == json!([value(&nanjing_budget)])).await;
    server.stop().await.unwrap();
}
