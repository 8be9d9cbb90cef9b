//! The container images' Dockerfile, checked without a Docker engine: each shipped stage
//! (`operator`, `apiserver`) starts from distroless `nonroot`, runs as a numeric non-root
//! user, has no RUN or SHELL (there is no shell to run them), starts its binary with an
//! exec-form ENTRYPOINT, carries the OCI labels, and copies only binaries that the workspace
//! builds; the builder installs protoc and builds with `--locked`; `.dockerignore` keeps
//! `target/` and `.git` out of the build context; and hadolint (pinned, installed from PyPI by
//! `tests/cluster/hadolint`) finds nothing to warn about.

use std::collections::{BTreeMap, BTreeSet};

use suyun_tests::repo_root;

/// One instruction: keyword (upper case) and its arguments, continuation lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// A build stage: its base image, its name and its instructions.
#[derive(Debug)]
struct Stage {
    from: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

fn parse(text: &str) -> (Vec<Instruction>, Vec<Stage>) {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
        } else if !trimmed.starts_with('#') {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    let instructions: Vec<Instruction> = logical
        .iter()
        .map(|l| {
            let (keyword, args) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            Instruction { keyword: keyword.to_uppercase(), args: args.trim().to_owned() }
        })
        .collect();
    let mut global = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for i in instructions {
        if i.keyword == "FROM" {
            let words: Vec<&str> = i.args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                _ => None,
            };
            stages.push(Stage { from: words[0].to_owned(), name, instructions: Vec::new() });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(i);
        } else {
            global.push(i);
        }
    }
    (global, stages)
}

fn dockerfile() -> (Vec<Instruction>, Vec<Stage>) {
    parse(&std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile at the repository root"))
}

/// Binary targets of the workspace, from `cargo metadata`.
fn workspace_bins() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut bins = BTreeSet::new();
    for package in metadata["packages"].as_array().unwrap() {
        for target in package["targets"].as_array().unwrap() {
            if target["kind"].as_array().unwrap().iter().any(|k| k == "bin") {
                bins.insert(target["name"].as_str().unwrap().to_owned());
            }
        }
    }
    bins
}

#[test]
fn the_shipped_stages_are_distroless_nonroot_without_a_shell() {
    let (_, stages) = dockerfile();
    let names: Vec<Option<&str>> = stages.iter().map(|s| s.name.as_deref()).collect();
    // A stage another stage copies from or builds on is internal; the rest are shipped.
    let used: BTreeSet<String> = stages
        .iter()
        .flat_map(|s| {
            s.instructions
                .iter()
                .filter_map(|i| i.args.split_whitespace().find_map(|w| w.strip_prefix("--from=")).map(str::to_owned))
                .chain(std::iter::once(s.from.clone()))
        })
        .collect();
    let shipped: Vec<&Stage> = stages.iter().filter(|s| s.name.as_ref().is_none_or(|n| !used.contains(n))).collect();
    let shipped_names: BTreeSet<&str> = shipped.iter().filter_map(|s| s.name.as_deref()).collect();
    assert_eq!(shipped_names, BTreeSet::from(["apiserver", "operator"]), "stages: {names:?}");
    let bins = workspace_bins();
    let expected_entrypoint = BTreeMap::from([("operator", "suyun-operator"), ("apiserver", "suyun-apiserver")]);
    for stage in shipped {
        let name = stage.name.as_deref().unwrap();
        assert!(
            stage.from.starts_with("gcr.io/distroless/") && stage.from.ends_with(":nonroot"),
            "{name}: FROM {} is not a distroless nonroot image",
            stage.from
        );
        let keywords: Vec<&str> = stage.instructions.iter().map(|i| i.keyword.as_str()).collect();
        for forbidden in ["RUN", "SHELL", "ADD", "CMD"] {
            assert!(!keywords.contains(&forbidden), "{name}: {forbidden} in the final stage");
        }
        let users: Vec<&Instruction> = stage.instructions.iter().filter(|i| i.keyword == "USER").collect();
        assert_eq!(users.len(), 1, "{name}: one USER");
        let (uid, gid) = users[0].args.split_once(':').unwrap_or((&users[0].args, "0"));
        let uid: u32 = uid.parse().unwrap_or_else(|_| panic!("{name}: USER {} is not numeric", users[0].args));
        assert!(uid != 0 && gid.parse::<u32>().is_ok_and(|g| g != 0), "{name}: USER {} is root", users[0].args);
        assert_eq!(uid, 65532, "{name}: the chart's securityContext runs as 65532");
        let position = |k: &str| keywords.iter().rposition(|x| *x == k).unwrap();
        assert!(position("USER") > position("COPY"), "{name}: USER comes after the files are in place");

        let entrypoints: Vec<&Instruction> = stage.instructions.iter().filter(|i| i.keyword == "ENTRYPOINT").collect();
        assert_eq!(entrypoints.len(), 1, "{name}: one ENTRYPOINT");
        let argv: Vec<String> = serde_json::from_str(&entrypoints[0].args)
            .unwrap_or_else(|_| panic!("{name}: ENTRYPOINT {} is not in exec (JSON) form", entrypoints[0].args));
        assert_eq!(argv, [format!("/usr/local/bin/{}", expected_entrypoint[name])], "{name}");

        let mut copied = BTreeSet::new();
        for copy in stage.instructions.iter().filter(|i| i.keyword == "COPY") {
            assert!(copy.args.contains("--from=builder"), "{name}: copies only from the builder: {}", copy.args);
            let words: Vec<&str> = copy.args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            let (dest, sources) = words.split_last().unwrap();
            assert_eq!(*dest, "/usr/local/bin/", "{name}");
            for source in sources {
                let bin = source.rsplit('/').next().unwrap();
                assert!(bins.contains(bin), "{name}: {bin} is not a binary of the workspace ({bins:?})");
                copied.insert(bin.to_owned());
            }
        }
        assert!(copied.contains(expected_entrypoint[name]), "{name}: its ENTRYPOINT binary is copied");

        let labels: String =
            stage.instructions.iter().filter(|i| i.keyword == "LABEL").map(|i| i.args.as_str()).collect();
        for label in ["title", "description", "source", "licenses", "version", "revision"] {
            assert!(labels.contains(&format!("org.opencontainers.image.{label}=")), "{name}: OCI label {label}");
        }
    }
}

#[test]
fn the_builder_builds_every_copied_binary_with_the_lock_file() {
    let (global, stages) = dockerfile();
    assert!(global.iter().all(|i| i.keyword == "ARG"), "only ARGs before the first FROM");
    let builder = stages.iter().find(|s| s.name.as_deref() == Some("builder")).expect("a builder stage");
    assert!(builder.from.contains("rust:"), "the builder is a Rust image: {}", builder.from);
    let runs: String = builder.instructions.iter().filter(|i| i.keyword == "RUN").map(|i| i.args.as_str()).collect();
    assert!(runs.contains("protobuf-compiler"), "protoc is installed (etcd-client needs it)");
    assert!(
        runs.contains("libprotobuf-dev"),
        "protoc's well-known .proto files are installed (etcd's definitions import descriptor.proto)"
    );
    assert!(runs.contains("cargo build --release --locked"), "a release build from Cargo.lock");
    for bin in ["suyun-operator", "suyunctl", "suyun-apiserver"] {
        assert!(runs.contains(&format!("target/release/{bin}")), "the builder collects {bin}");
    }
    // The builder's Debian release is the runtime's (the binaries link glibc dynamically).
    let release = global.iter().find_map(|i| i.args.strip_prefix("DEBIAN_RELEASE=")).expect("ARG DEBIAN_RELEASE");
    let debian_version = match release {
        "bookworm" => "debian12",
        "trixie" => "debian13",
        other => panic!("unknown Debian release {other}"),
    };
    for stage in stages.iter().filter(|s| s.from.starts_with("gcr.io/distroless/")) {
        assert!(stage.from.contains(debian_version), "{} runs on {release}'s glibc", stage.from);
    }
}

#[test]
fn the_build_context_leaves_out_target_and_git() {
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore")).expect(".dockerignore");
    let patterns: BTreeSet<&str> =
        ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for needed in [".git", "target"] {
        assert!(patterns.contains(needed), ".dockerignore lists {needed}");
    }
    // Nothing the build needs is left out: every workspace member's sources stay.
    for member in ["crds", "operator", "apiserver", "tests", "Cargo.toml", "Cargo.lock"] {
        assert!(!patterns.contains(member), ".dockerignore must not drop {member}");
    }
}

/// Runs `tests/cluster/hadolint` on `dockerfile`; returns (success, output).
fn hadolint(dockerfile: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("tests/cluster/hadolint"))
        .args(["--failure-threshold", "info", "--no-color"])
        .arg(dockerfile)
        .output()
        .expect("running tests/cluster/hadolint");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn hadolint_finds_nothing_in_the_dockerfile_and_does_flag_a_bad_one() {
    let (ok, output) = hadolint(&repo_root().join("Dockerfile"));
    assert!(ok, "hadolint on Dockerfile:\n{output}");
    // The control: a Dockerfile with well-known mistakes is refused, so a pass above means
    // hadolint really ran and checked.
    let dir = repo_root().join("target/test-dockerfile");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("Dockerfile.bad");
    std::fs::write(&bad, "FROM debian:latest\nRUN cd /tmp && apt-get install curl\nUSER root\n").unwrap();
    let (ok, output) = hadolint(&bad);
    assert!(!ok, "hadolint accepted a bad Dockerfile:\n{output}");
    assert!(output.contains("DL3007") || output.contains("DL3003"), "{output}");
}
