//! A member cluster's kubeconfig, read from a Secret, turned into a client. A Secret is data
//! anyone with write access to the operator's namespace can change, so only what connects to
//! one cluster with embedded credentials is accepted: no `exec` or `auth-provider` plugin (a
//! command the operator would run), no file paths (files of the operator's own pod), no
//! `insecure-skip-tls-verify`, no proxy, `https://` only. Errors name the field and never
//! carry a credential.

use kube::config::{KubeConfigOptions, Kubeconfig};

/// Why a kubeconfig was refused or could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kubeconfig: {field}: {problem}")]
pub struct KubeconfigRefused {
    /// The field, as a path in the kubeconfig (e.g. `users[0].user.exec`).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

fn refuse(field: impl Into<String>, problem: impl Into<String>) -> KubeconfigRefused {
    KubeconfigRefused { field: field.into(), problem: problem.into() }
}

/// Parses `yaml` and checks it connects to exactly one cluster with embedded credentials over
/// verified TLS (the context used is the current one).
pub fn parse(yaml: &str) -> Result<Kubeconfig, KubeconfigRefused> {
    // The parser's own message may quote the document; only its position is kept.
    let config = Kubeconfig::from_yaml(yaml).map_err(|_| refuse("(document)", "not a kubeconfig (YAML)"))?;
    let current = config.current_context.as_deref().ok_or_else(|| refuse("current-context", "missing"))?;
    let (ci, context) = config
        .contexts
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == current)
        .ok_or_else(|| refuse("current-context", format!("names no context ({current:?})")))?;
    let context = context.context.as_ref().ok_or_else(|| refuse(format!("contexts[{ci}].context"), "missing"))?;
    let (i, cluster) = config
        .clusters
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == context.cluster)
        .ok_or_else(|| refuse(format!("contexts[{ci}].context.cluster"), "names no cluster"))?;
    let at = |f: &str| format!("clusters[{i}].cluster.{f}");
    let cluster = cluster.cluster.as_ref().ok_or_else(|| refuse(format!("clusters[{i}].cluster"), "missing"))?;
    match cluster.server.as_deref() {
        Some(s) if s.starts_with("https://") => {}
        Some(_) => return Err(refuse(at("server"), "must be an https:// URL")),
        None => return Err(refuse(at("server"), "missing")),
    }
    if cluster.insecure_skip_tls_verify == Some(true) {
        return Err(refuse(at("insecure-skip-tls-verify"), "the member's certificate is always verified"));
    }
    if cluster.certificate_authority.is_some() {
        return Err(refuse(at("certificate-authority"), "a file path; embed it as certificate-authority-data"));
    }
    if cluster.proxy_url.is_some() {
        return Err(refuse(at("proxy-url"), "not supported for member clusters"));
    }
    let user = context.user.as_deref().ok_or_else(|| refuse(format!("contexts[{ci}].context.user"), "missing"))?;
    let (u, auth) = config
        .auth_infos
        .iter()
        .enumerate()
        .find(|(_, a)| a.name == user)
        .ok_or_else(|| refuse(format!("contexts[{ci}].context.user"), "names no user"))?;
    let at = |f: &str| format!("users[{u}].user.{f}");
    let auth = auth.auth_info.as_ref().ok_or_else(|| refuse(format!("users[{u}].user"), "missing"))?;
    let forbidden = [
        ("exec", auth.exec.is_some(), "runs a command in the operator; use a token or a client certificate"),
        (
            "auth-provider",
            auth.auth_provider.is_some(),
            "runs a plugin in the operator; use a token or a client certificate",
        ),
        ("tokenFile", auth.token_file.is_some(), "a file path; embed the token"),
        ("client-certificate", auth.client_certificate.is_some(), "a file path; embed it as client-certificate-data"),
        ("client-key", auth.client_key.is_some(), "a file path; embed it as client-key-data"),
        ("username", auth.username.is_some() || auth.password.is_some(), "basic authentication is not supported"),
        ("as", auth.impersonate.is_some() || auth.impersonate_groups.is_some(), "impersonation is not supported"),
    ];
    if let Some((field, _, problem)) = forbidden.iter().find(|(_, present, _)| *present) {
        return Err(refuse(at(field), *problem));
    }
    let certificate = auth.client_certificate_data.is_some() && auth.client_key_data.is_some();
    if auth.token.is_none() && !certificate {
        return Err(refuse(
            format!("users[{u}].user"),
            "no credentials: a token, or client-certificate-data and client-key-data",
        ));
    }
    Ok(config)
}

/// A client for the member `yaml` connects to (see [`parse`]).
pub async fn client(yaml: &str) -> Result<kube::Client, KubeconfigRefused> {
    let config = parse(yaml)?;
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .map_err(|e| refuse("(document)", format!("cannot be used: {}", kind_of(&e))))?;
    kube::Client::try_from(config).map_err(|e| refuse("(document)", format!("no client: {e}")))
}

/// What went wrong loading a kubeconfig, without the parts of the message that could quote it.
fn kind_of(e: &kube::config::KubeconfigError) -> &'static str {
    use kube::config::KubeconfigError as E;
    match e {
        E::ParseClusterUrl(_) => "the server URL does not parse",
        E::ParseCertificates(_) => "a certificate does not parse",
        _ => "its credentials or certificates could not be loaded",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(cluster: &str, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: member\n\
             contexts:\n- name: member\n  context: {{cluster: c, user: u}}\n\
             clusters:\n- name: c\n  cluster:\n{cluster}\n\
             users:\n- name: u\n  user:\n{user}\n"
        )
    }

    const SERVER: &str = "    server: https://127.0.0.1:6443\n    certificate-authority-data: Zm9v";
    const TOKEN: &str = "    token: s3cr3t-t0ken";

    #[test]
    fn embedded_credentials_over_verified_tls_are_accepted() {
        assert!(parse(&kubeconfig(SERVER, TOKEN)).is_ok());
        let cert = "    client-certificate-data: Zm9v\n    client-key-data: YmFy";
        assert!(parse(&kubeconfig(SERVER, cert)).is_ok());
    }

    #[test]
    fn what_would_run_read_files_or_skip_verification_is_refused_by_field_and_never_quoted() {
        let cases = [
            (
                kubeconfig("    server: https://x\n    insecure-skip-tls-verify: true", TOKEN),
                "clusters[0].cluster.insecure-skip-tls-verify",
            ),
            (kubeconfig("    server: http://127.0.0.1:8080", TOKEN), "clusters[0].cluster.server"),
            (
                kubeconfig("    server: https://x\n    certificate-authority: /etc/ssl/ca.pem", TOKEN),
                "clusters[0].cluster.certificate-authority",
            ),
            (
                kubeconfig(
                    SERVER,
                    "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      args: [-c, 's3cr3t-t0ken']",
                ),
                "users[0].user.exec",
            ),
            (
                kubeconfig(SERVER, "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token"),
                "users[0].user.tokenFile",
            ),
            (
                kubeconfig(SERVER, "    client-certificate: /tmp/c.pem\n    client-key-data: YmFy"),
                "users[0].user.client-certificate",
            ),
            (kubeconfig(SERVER, "    username: admin\n    password: s3cr3t-t0ken"), "users[0].user.username"),
            (kubeconfig(SERVER, "    as: system:admin\n    token: s3cr3t-t0ken"), "users[0].user.as"),
            (kubeconfig(SERVER, "    client-key-data: YmFy"), "users[0].user"),
        ];
        for (yaml, field) in cases {
            let refused = parse(&yaml).unwrap_err();
            assert_eq!(refused.field, field, "{refused}");
            assert!(!refused.to_string().contains("s3cr3t"), "a credential in the message: {refused}");
        }
        let garbage = parse("token: s3cr3t-t0ken: [").unwrap_err();
        assert!(!garbage.to_string().contains("s3cr3t"), "{garbage}");
    }
}
