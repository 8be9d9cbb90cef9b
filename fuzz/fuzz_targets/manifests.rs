//! `suyunctl plan`'s manifest path: arbitrary text read as one YAML file (multi-document) by
//! `manifests::load_text`, then what `suyunctl` does with the objects: the reference check,
//! the planner input, the plan and its table. Any step may refuse the input; none may panic.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use suyun_operator::manifests::load_text;
use suyun_operator::plan_input::{Objects, check_references, plan_input};

fuzz_target!(|text: &str| {
    let mut objects = Objects::default();
    if load_text(Path::new("fuzz.yaml"), text, &mut objects).is_err() {
        return;
    }
    if !check_references(&objects).is_empty() {
        return;
    }
    // 2025-12-01T00:00:00Z, as `suyunctl plan --now` would pass.
    if let Ok(input) = plan_input(&objects, 1_764_547_200) {
        let _ = suyun_planner::plan(&input).render_table();
    }
});
