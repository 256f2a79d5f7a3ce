//! The chart's RBAC, enforced by the real kube-apiserver (`--authorization-mode=RBAC`): the
//! operator runs with a token of its ServiceAccount bound by the objects `helm template`
//! renders, so it gets exactly the chart's permissions.

use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::access::put_secret;
use crate::common::*;

const RELEASE: &str = "jets3";

/// `helm template` of the chart's RBAC for a release in `namespace`, with `sets`.
fn rendered_rbac(namespace: &str, sets: &[String]) -> Vec<serde_json::Value> {
    let chart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/jets3");
    let mut cmd = Command::new(tool("helm"));
    cmd.args(["template", RELEASE]).arg(&chart).args([
        "--namespace",
        namespace,
        "--show-only",
        "templates/rbac.yaml",
    ]);
    for s in sets {
        cmd.arg(format!("--set={s}"));
    }
    let out = cmd.output().expect("helm runs");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::Deserializer::from_slice(&out.stdout)
        .filter_map(|d| {
            let v: serde_json::Value = serde::Deserialize::deserialize(d).unwrap();
            (!v.is_null()).then_some(v)
        })
        .collect()
}

/// Creates the rendered objects (as the cluster admin).
async fn create_all(client: &Client, objects: &[serde_json::Value]) {
    async fn create<K>(api: Api<K>, v: &serde_json::Value)
    where
        K: kube::Resource
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let obj: K = serde_json::from_value(v.clone()).unwrap();
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("creating {v}: {e}"));
    }
    for v in objects {
        let ns = v["metadata"]["namespace"].as_str().unwrap_or_default();
        let c = client.clone();
        match v["kind"].as_str().unwrap() {
            "ServiceAccount" => create::<ServiceAccount>(Api::namespaced(c, ns), v).await,
            "Role" => create::<Role>(Api::namespaced(c, ns), v).await,
            "RoleBinding" => create::<RoleBinding>(Api::namespaced(c, ns), v).await,
            "ClusterRole" => create::<ClusterRole>(Api::all(c), v).await,
            "ClusterRoleBinding" => create::<ClusterRoleBinding>(Api::all(c), v).await,
            other => panic!("unexpected {other} in the chart's RBAC"),
        }
    }
}

/// A kubeconfig like the admin's, with a token of ServiceAccount `<release>-operator`.
async fn operator_kubeconfig(env: &Env, namespace: &str) -> PathBuf {
    let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), namespace);
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": {"expirationSeconds": 3600}
    }))
    .unwrap();
    let token = sas
        .create_token_request(
            &format!("{RELEASE}-operator"),
            &PostParams::default(),
            &request,
        )
        .await
        .expect("a token of the operator's ServiceAccount")
        .status
        .expect("token status")
        .token;
    let admin = std::fs::read_to_string(&env.cp.kubeconfig).unwrap();
    let text: String = admin
        .lines()
        .map(|l| match l.split_once("token: ") {
            Some((indent, _)) => format!("{indent}token: {token}"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = env.dir.path().join("operator.kubeconfig");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn with_watch_namespaces_the_operator_works_on_roles_alone_and_reads_no_other_secret() {
    // ns 0: the release (operator) namespace; 1: watched; 2: someone else's.
    let mut env = Env::without_operator(3).await;
    let (own, watched, other) = (
        env.ns(0).to_string(),
        env.ns(1).to_string(),
        env.ns(2).to_string(),
    );
    let objects = rendered_rbac(&own, &[format!("operator.watchNamespaces={{{watched}}}")]);
    assert!(
        objects
            .iter()
            .all(|o| !o["kind"].as_str().unwrap().starts_with("Cluster")),
        "Roles only: {objects:?}"
    );
    create_all(&env.client, &objects).await;
    for ns in [&own, &other, &watched] {
        put_secret(&env, ns, "unrelated", "password", b"not the operator's").await;
    }
    let kubeconfig = operator_kubeconfig(&env, &own).await;
    let mut o = env.options();
    o.namespaces = vec![watched.clone()];
    o.kubeconfig = Some(kubeconfig.clone());
    env.operator = Some(env.start_operator("operator", &o));

    // It works: a bucket, a credential and its Secret.
    env.create_bucket(&watched, "data", json!({})).await;
    env.create_credential(
        &watched,
        "app",
        json!({"grants": [{"bucket": "data", "permission": "read"}]}),
    )
    .await;
    env.condition(&env.buckets(&watched), "data", "Ready", "True", None)
        .await;
    env.condition(
        &env.credentials(&watched),
        "app",
        "SecretWritten",
        "True",
        None,
    )
    .await;
    env.operator()
        .config_where("the credential is in the config", |c| {
            c.credentials.len() == 1
        })
        .await;

    // With its token, Secrets outside the watched namespace are out of reach.
    let sa = client_for(&kubeconfig).await;
    for ns in [&own, &other] {
        let api: Api<Secret> = Api::namespaced(sa.clone(), ns);
        for (what, result) in [
            ("get", api.get("unrelated").await.map(drop)),
            ("list", api.list(&ListParams::default()).await.map(drop)),
        ] {
            match result {
                Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{what} in {ns}: {s:?}"),
                other => panic!("{what} Secrets in {ns} must be forbidden: {other:?}"),
            }
        }
    }
    let all: Api<Secret> = Api::all(sa.clone());
    match all.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403),
        other => panic!("listing every Secret must be forbidden: {other:?}"),
    }
    // The operator never needed them: nothing was refused along the way.
    let log = env.operator().log_text();
    assert!(!refused(&log), "{log}");
}

/// Whether a log tells of a refusal: "forbidden", or 403 as a word of its own (not part of a
/// timestamp or a hash, such as `06:06:33.079403Z`).
fn refused(log: &str) -> bool {
    let word_at = |i: Option<usize>| {
        i.and_then(|i| log.as_bytes().get(i))
            .is_some_and(u8::is_ascii_alphanumeric)
    };
    log.to_ascii_lowercase().contains("forbidden")
        || log
            .match_indices("403")
            .any(|(i, _)| !word_at(i.checked_sub(1)) && !word_at(Some(i + 3)))
}

#[test]
fn a_refusal_is_told_from_digits_that_happen_to_read_403() {
    assert!(!refused(
        "2026-12-06T06:06:33.079403Z INFO published hash=d12c4031 id=ab403cd"
    ));
    assert!(refused("ApiError: 403 (reason: Forbidden)"));
    assert!(refused("status 403"));
    assert!(refused("secrets is forbidden: User cannot list"));
}
