//! Reads the objects a plan is made from out of a live cluster, for `suyunctl plan
//! --from-cluster` and `suyunctl forecast --from-cluster`: every Suyun kind, listed in pages,
//! with their statuses (phase and node come from there). Offline tools see no member cluster,
//! so a node's member facts (unreachable, free per machine) are not known here.

use std::sync::Arc;

use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use suyun_crds::v1alpha1::{CityBudget, CloudNode, GovSystem, MigrationWave, ResidencyPolicy, Tenant};

use crate::plan_input::Objects;

/// Objects listed per request.
const PAGE: u32 = 500;

async fn list_all<K>(client: &Client) -> Result<Vec<Arc<K>>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api = Api::<K>::all(client.clone());
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        out.extend(page.items.into_iter().map(Arc::new));
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// Every CloudNode, Tenant, GovSystem, MigrationWave, CityBudget and ResidencyPolicy.
pub async fn objects(client: &Client) -> Result<Objects, kube::Error> {
    let (cloud_nodes, tenants, systems, waves, city_budgets, residency_policies) = futures::try_join!(
        list_all::<CloudNode>(client),
        list_all::<Tenant>(client),
        list_all::<GovSystem>(client),
        list_all::<MigrationWave>(client),
        list_all::<CityBudget>(client),
        list_all::<ResidencyPolicy>(client),
    )?;
    Ok(Objects { cloud_nodes, tenants, systems, waves, city_budgets, residency_policies, members: Default::default() })
}
