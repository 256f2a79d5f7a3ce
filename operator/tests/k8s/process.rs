//! The operator process: CRD check at start, leader election and failover, kube-apiserver
//! restarts.

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;

use crate::common::*;

async fn leads(o: &Operator) -> Option<bool> {
    let (_, m) = o.get("/metrics").await?;
    match metric(&m, "jets3_operator_leader")?.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

#[tokio::test]
async fn two_replicas_one_leader_and_failover() {
    let env = Env::without_operator(1).await;
    let ns = env.ns(0);
    let lease = unique("lease");
    let mut o = env.options();
    o.leader_election = Some(lease.clone());
    let mut first = env.start_operator("replica-a", &o);
    eventually("replica-a leads", || async {
        leads(&first).await.filter(|l| *l)
    })
    .await;
    let second = env.start_operator("replica-b", &o);
    eventually("replica-b stands by", || async {
        let (code, body) = second.get("/readyz").await?;
        (code == 200 && body == "standby").then_some(())
    })
    .await;
    assert_eq!(leads(&second).await, Some(false));
    let holder = Api::<Lease>::namespaced(env.client.clone(), ns)
        .get(&lease)
        .await
        .unwrap();
    assert_eq!(
        holder.spec.unwrap().holder_identity.as_deref(),
        Some("replica-a")
    );

    env.create_bucket(ns, "led", json!({})).await;
    env.condition(&env.buckets(ns), "led", "Ready", "True", None)
        .await;

    // The leader dies without releasing the Lease: the standby takes over once it expires.
    first.kill();
    eventually("replica-b leads", || async {
        leads(&second).await.filter(|l| *l)
    })
    .await;
    let l = Api::<Lease>::namespaced(env.client.clone(), ns)
        .get(&lease)
        .await
        .unwrap();
    let spec = l.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(spec.lease_transitions, Some(1));
    env.create_bucket(ns, "after", json!({})).await;
    env.condition(&env.buckets(ns), "after", "Ready", "True", None)
        .await;

    // A graceful stop releases the Lease, so a successor need not wait for it to expire.
    let mut second = second;
    assert!(second.terminate().await.success());
    let l = Api::<Lease>::namespaced(env.client.clone(), ns)
        .get(&lease)
        .await
        .unwrap();
    assert_eq!(l.spec.unwrap().holder_identity, None);
    let third = env.start_operator("replica-c", &o);
    eventually("replica-c leads", || async {
        leads(&third).await.filter(|l| *l)
    })
    .await;
}

#[tokio::test]
async fn missing_crds_stop_the_start_and_watches_survive_an_apiserver_restart() {
    // A control plane of its own: this test runs without CRDs and restarts the apiserver.
    let cp = ControlPlane::start(false);
    let client = cp.client().await;
    let ns = unique("t");
    create_namespace(&client, &ns).await;
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let o = OperatorOptions {
        namespaces: vec![ns.clone()],
        namespace: ns.clone(),
        leader_election: None,
        resync: "2s".into(),
        extra_args: Vec::new(),
        kubeconfig: None,
        binary: None,
    };
    let mut op = Operator::start(&cp, &nats, dir.path(), "no-crds", &o);
    let status = op.exited().await;
    assert!(!status.success());
    let log = op.log_text();
    assert!(
        log.contains("the CustomResourceDefinition s3buckets.jets3.io is not installed"),
        "{log}"
    );

    install_crds(&client).await;
    let op = Operator::start(&cp, &nats, dir.path(), "operator", &o);
    let buckets: Api<jets3_crds::k8s::S3Bucket> = Api::namespaced(client.clone(), &ns);
    let ready = |name: &'static str| {
        let buckets = buckets.clone();
        async move {
            eventually(&format!("{name} is Ready"), || async {
                let b = buckets.get(name).await.ok()?;
                let c = conditions_of(&b).into_iter().find(|c| c.type_ == "Ready")?;
                (c.status == "True").then_some(())
            })
            .await
        }
    };
    create_bucket_with(&buckets, "before", json!({})).await;
    ready("before").await;
    cp.restart_apiserver().await;
    create_bucket_with(&buckets, "after-restart", json!({})).await;
    ready("after-restart").await;
    assert!(nats.bucket("after-restart").await.is_some());
    drop(op);
}

async fn create_bucket_with(
    api: &Api<jets3_crds::k8s::S3Bucket>,
    name: &str,
    spec: serde_json::Value,
) {
    let b: jets3_crds::k8s::S3Bucket = serde_json::from_value(json!({
        "apiVersion": "jets3.io/v1alpha1", "kind": "S3Bucket",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    api.create(&Default::default(), &b).await.unwrap();
}
