//! A few systems per province built not to fit, so that every common reason shows: a
//! dependency cycle of three, a system waiting on it, an unknown dependency, a system larger
//! than the biggest city node, and a 等保 level-3 (or aarch64) system homed on a city node that
//! cannot run it, all without spillover.

use super::{GI, INTERNAL, Province};
use crate::model::{ArchitectureRequirement, PlanInput, Resources, System};

/// Systems per province built not to fit.
pub const MISFITS: usize = 7;

impl Province {
    pub(super) fn inject_misfits(&self, input: &mut PlanInput, levels: &[u8], aarch64: &[bool]) {
        let spec = &self.spec;
        let abbr = spec.abbr;
        let code = format!("{}0000", spec.code2);
        let wave = Some(self.wave(INTERNAL));
        let base = |n: u32, tenant: &str| System {
            system_id: format!("{abbr}-{}-9{n:03}", &tenant[3..9]),
            name: format!("{}-{}-9{n:03}", abbr.to_lowercase(), &tenant[3..9]),
            tenant: tenant.to_owned(),
            display_name: format!("{}试点系统{n}", spec.name),
            security_level: 2,
            resources: Resources { cpu: 4000, memory: 16 * GI, storage: 200 * GI, gpu: 0 },
            data_volume: 100 * GI,
            priority: 500,
            wave: wave.clone(),
            ..System::default()
        };
        let provincial = format!("{}-{code}-{:03}", abbr.to_lowercase(), 40);
        // A dependency cycle of three, a system waiting on it, an unknown dependency.
        let id = |n: u32| format!("{abbr}-{code}-9{n:03}");
        for (n, dep) in [(1, 2), (2, 3), (3, 1), (4, 1), (5, 999)] {
            let mut s = base(n, &provincial);
            s.depends_on.push(id(dep));
            input.systems.push(s);
        }
        // The biggest city: one system larger than the whole node, spillover not allowed.
        let big = (1..self.nodes.len())
            .max_by(|a, b| spec.cities[a - 1].weight.total_cmp(&spec.cities[b - 1].weight))
            .unwrap_or(1);
        let node0 = input.nodes.len() - self.nodes.len();
        let tenant = input.tenants[self.first_tenant..]
            .iter()
            .position(|t| t.home_node == self.nodes[big])
            .map(|t| self.first_tenant + t)
            .unwrap_or(self.first_tenant);
        let mut s = base(6, &input.tenants[tenant].name.clone());
        s.resources.cpu = input.nodes[node0 + big].allocatable.cpu + 64_000;
        s.resources.memory = 256 * GI;
        input.tenants[tenant].quota.cpu += s.resources.cpu;
        input.tenants[tenant].quota.memory += s.resources.memory;
        input.tenants[tenant].quota.max_systems += 1;
        input.systems.push(s);
        // A 等保 level 3 system homed on a level-2 city, or an aarch64 one on an x86-only city.
        let low = (1..self.nodes.len()).find(|k| levels[*k] < 3 || !aarch64[*k]).unwrap_or(1);
        let tenant = input.tenants[self.first_tenant..]
            .iter()
            .position(|t| t.home_node == self.nodes[low])
            .map(|t| self.first_tenant + t)
            .unwrap_or(self.first_tenant);
        let mut s = base(7, &input.tenants[tenant].name.clone());
        if levels[low] < 3 {
            s.security_level = 3;
        } else {
            s.architecture = ArchitectureRequirement::Aarch64;
        }
        input.tenants[tenant].quota.max_systems += 1;
        input.systems.push(s);
    }
}
