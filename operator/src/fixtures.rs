//! Test fixtures for reconciles without a cluster, after kube-rs's controller-rs
//! `fixtures.rs`: the kube client talks to a scripted [`ApiServer`] (a `tower-test` mock
//! service), NATS is a real nats-server from jets3-testkit.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use jets3_crds::k8s::{S3Bucket, S3Credential};
use jets3_nats::NatsSettings;
use jets3_testkit::NatsServer;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

use crate::context::{Context, Kicks, Settings, Stores};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::model::gateway_config::{Build, GatewayWide};
use crate::nats::Nats;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The API server's side of the client: a test answers each request in the order the
/// reconcile is expected to make them. Dropping it fails every later request.
pub struct ApiServer(Handle);

/// One request the API server received.
#[derive(Debug)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// The JSON body (`Null` without one).
    pub body: Value,
}

impl ApiServer {
    /// Takes the next request, which must be `method` on `path`, and answers `status` with
    /// what `respond` makes of it.
    pub async fn expect(
        &mut self,
        method: Method,
        path: &str,
        status: u16,
        respond: impl FnOnce(&Call) -> Value,
    ) -> Call {
        let (request, send) = tokio::time::timeout(Duration::from_secs(10), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"))
            .expect("the client is alive");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("a request body");
        let call = Call {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        assert_eq!(
            (&call.method, call.path.as_str()),
            (&method, path),
            "unexpected request: {call:?}"
        );
        let answer = serde_json::to_vec(&respond(&call)).expect("JSON");
        send.send_response(
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(answer))
                .expect("a response"),
        );
        call
    }

    /// Expects an Event about an object in `namespace`; its reason.
    pub async fn event(&mut self, namespace: &str) -> String {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events");
        let call = self
            .expect(Method::POST, &path, 201, |c| c.body.clone())
            .await;
        call.body["reason"].as_str().unwrap_or_default().to_string()
    }
}

/// The body of a 404 answer.
pub fn not_found(what: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": format!("{what} not found"), "reason": "NotFound", "code": 404
    })
}

/// `obj` as the API server would return it after a status patch with `patch`.
pub fn with_status<K: serde::Serialize>(obj: &K, patch: &Value) -> Value {
    let mut v = serde_json::to_value(obj).expect("JSON");
    v["status"] = patch["status"].clone();
    v
}

/// A reconcile context on the mock API server and a fresh nats-server (kept alive by the
/// returned handle).
pub async fn context() -> (Arc<Context>, ApiServer, NatsServer) {
    let server = NatsServer::start().await;
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let nats = Nats::connect(&NatsSettings {
        servers: vec![server.url()],
        ..Default::default()
    })
    .await
    .expect("NATS");
    // The connect goes on in the background; a reconcile fails at once while it does.
    tokio::time::timeout(Duration::from_secs(10), async {
        while !nats.connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("connected to NATS");
    let settings = Settings {
        endpoint: "http://jets3.test:9000".into(),
        region: "us-east-1".into(),
        gateway: GatewayWide::default(),
        resync: Duration::from_secs(60),
        delete_timeout: Duration::from_secs(600),
        namespace: "jets3".into(),
        instance: "test".into(),
        watch_namespaces: vec![],
        adopt_across_namespaces: vec![],
        config_state: "jets3-config-state".into(),
        config_file: None,
        push: None,
    };
    let ctx = Context::new(
        client,
        nats,
        Metrics::new(),
        settings,
        Arc::new(Hub::default()),
        Stores::default(),
        Kicks::default(),
    );
    (Arc::new(ctx), ApiServer(handle), server)
}

/// Marks the first config as built, with nothing in it (reconciles wait for that).
pub fn built(ctx: &Context) {
    let build = Build {
        config: Default::default(),
        problems: vec![],
        buckets: Default::default(),
        credentials: Default::default(),
        next_expiry: None,
    };
    ctx.hub.install(build, 1, None);
}

/// An S3Bucket `name` in namespace `team-a` as the API server holds it.
pub fn bucket(name: &str, spec: Value) -> S3Bucket {
    object("S3Bucket", name, spec)
}

/// An S3Credential `name` in namespace `team-a` as the API server holds it.
pub fn credential(name: &str, spec: Value) -> S3Credential {
    object("S3Credential", name, spec)
}

fn object<K: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "jets3.io/v1alpha1", "kind": kind,
        "metadata": {
            "name": name, "namespace": "team-a", "uid": format!("uid-{name}"),
            "generation": 1, "resourceVersion": "1",
            "creationTimestamp": "2026-12-05T10:00:00Z"
        },
        "spec": spec
    }))
    .unwrap_or_else(|e| panic!("a {kind}: {e}"))
}
