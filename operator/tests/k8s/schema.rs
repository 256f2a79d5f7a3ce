//! What the real kube-apiserver refuses, from the CRDs' schema and CEL rules, with the
//! message a person sees.

use jets3_crds::k8s::{S3Bucket, S3Credential};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

use crate::common::*;

struct Ns {
    client: kube::Client,
    ns: String,
}

async fn ns() -> Ns {
    let client = ControlPlane::shared().client().await;
    let ns = unique("schema");
    create_namespace(&client, &ns).await;
    Ns { client, ns }
}

impl Ns {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates the object as raw JSON (no client-side typing); `Err(message)` when the
    /// apiserver refuses it.
    async fn create(&self, kind: &str, name: &str, spec: Value) -> Result<(), String> {
        let resource = match kind {
            "S3Bucket" => ApiResource::erase::<S3Bucket>(&()),
            _ => ApiResource::erase::<S3Credential>(&()),
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns, &resource);
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "jets3.io/v1alpha1", "kind": kind,
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap();
        api.create(&PostParams::default(), &obj)
            .await
            .map(drop)
            .map_err(message)
    }

    /// Merge-patches a bucket's spec; `Err(message)` when refused.
    async fn patch_bucket(&self, name: &str, spec: Value) -> Result<(), String> {
        self.api::<S3Bucket>()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .map(drop)
            .map_err(message)
    }
}

fn message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422, "{s:?}");
            s.message
        }
        other => panic!("not an API refusal: {other}"),
    }
}

#[track_caller]
fn refused(result: Result<(), String>, part: &str) {
    match result {
        Ok(()) => panic!("accepted, expected a refusal mentioning {part:?}"),
        Err(m) => assert!(m.contains(part), "{m:?} does not mention {part:?}"),
    }
}

#[tokio::test]
async fn invalid_buckets_are_refused_with_a_clear_message() {
    let n = ns().await;
    let b = |name: &'static str, spec: Value| n.create("S3Bucket", name, spec);
    refused(b("ab", json!({})).await, "between 3 and 63 characters");
    refused(
        b("one", json!({"bucketName": "Bad_Name"})).await,
        "spec.bucketName",
    );
    refused(
        b("two", json!({"bucketName": "192.168.1.1"})).await,
        "IP address",
    );
    refused(
        b("three", json!({"bucketName": "xn--abc"})).await,
        "must not start with",
    );
    refused(
        b("four", json!({"bucketName": "logs-s3alias"})).await,
        "must not end with",
    );
    refused(b("five", json!({"replicas": 6})).await, "spec.replicas");
    refused(b("six", json!({"replicas": 0})).await, "spec.replicas");
    refused(b("seven", json!({"storage": "disk"})).await, "spec.storage");
    refused(b("eight", json!({"ttl": "1d"})).await, "spec.ttl");
    refused(
        b("nine", json!({"maxBytes": 10, "maxObjectBytes": 11})).await,
        "maxObjectBytes must not be larger than maxBytes",
    );
    refused(
        b("ten", json!({"metadata": {"jets3.owner": "me"}})).await,
        "are reserved",
    );
    refused(
        b("eleven", json!({"deletionPolicy": "Destroy"})).await,
        "spec.deletionPolicy",
    );
    refused(
        b("twelve", json!({"access": "public-write"})).await,
        "spec.access",
    );
    refused(
        b("versioning", json!({"versioning": "enabled"})).await,
        "spec.versioning",
    );
    refused(
        b(
            "thirteen",
            json!({"cors": [{"allowedOrigins": ["*"], "allowedMethods": ["PATCH"]}]}),
        )
        .await,
        "allowedMethods",
    );
    b("fine.bucket.name", json!({"replicas": 5, "ttl": "720h"}))
        .await
        .unwrap();
}

#[tokio::test]
async fn immutable_bucket_fields_cannot_change() {
    let n = ns().await;
    n.create(
        "S3Bucket",
        "fixed",
        json!({"bucketName": "fixed-name", "storage": "file", "natsBucket": "fixed_nats"}),
    )
    .await
    .unwrap();
    refused(
        n.patch_bucket("fixed", json!({"bucketName": "other-name"}))
            .await,
        "is immutable",
    );
    refused(
        n.patch_bucket("fixed", json!({"storage": "memory"})).await,
        "storage is immutable",
    );
    refused(
        n.patch_bucket("fixed", json!({"natsBucket": "other"}))
            .await,
        "natsBucket is immutable",
    );
    // What may change, changes.
    n.patch_bucket(
        "fixed",
        json!({"replicas": 3, "description": "new", "access": "public-read"}),
    )
    .await
    .unwrap();
    n.create("S3Bucket", "implicit", json!({})).await.unwrap();
    refused(
        n.patch_bucket("implicit", json!({"bucketName": "explicit"}))
            .await,
        "is immutable",
    );
}

#[tokio::test]
async fn invalid_credentials_are_refused_with_a_clear_message() {
    let n = ns().await;
    let c = |name: &'static str, spec: Value| n.create("S3Credential", name, spec);
    let g = json!([{"bucket": "media", "permission": "read"}]);
    refused(c("none", json!({"grants": []})).await, "spec.grants");
    refused(
        c("twice", json!({"grants": [{"bucket": "media", "permission": "read"}, {"bucket": "media", "permission": "write"}]})).await,
        "a bucket may be granted only once",
    );
    refused(
        c(
            "perm",
            json!({"grants": [{"bucket": "media", "permission": "admin"}]}),
        )
        .await,
        "permission",
    );
    refused(
        c("src", json!({"grants": g, "keySource": {"type": "Secret"}})).await,
        "secretRef is required",
    );
    refused(
        c(
            "gen",
            json!({"grants": g, "keySource": {"type": "Generated", "secretRef": {"name": "x"}}}),
        )
        .await,
        "not allowed otherwise",
    );
    refused(
        c("same", json!({"grants": g, "secretName": "keys", "keySource": {"type": "Secret", "secretRef": {"name": "keys"}}})).await,
        "must not be the keySource Secret",
    );
    refused(
        c(
            "overlap",
            json!({"grants": g, "rotation": {"interval": "1h", "overlap": "2h"}}),
        )
        .await,
        "must be shorter than rotation.interval",
    );
    refused(
        c("norot", json!({"grants": g, "keySource": {"type": "Secret", "secretRef": {"name": "k"}}, "rotation": {"interval": "1h"}})).await,
        "applies only to generated keys",
    );
    refused(c("ns", json!({"grants": [{"bucket": "media", "namespace": "Not_A_Namespace", "permission": "read"}]})).await, "namespace");
    c(
        "fine",
        json!({"grants": g, "rotation": {"interval": "720h", "overlap": "24h"}}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn invalid_access_fields_are_refused_with_a_clear_message() {
    let n = ns().await;
    let b = |name: &'static str, spec: Value| n.create("S3Bucket", name, spec);
    let hs = json!({"algorithm": "HS256", "secretRef": {"name": "jwt", "key": "hmac"}});
    refused(
        b("cidr", json!({"ipFilter": {"allow": ["10.0.0.0/33"]}})).await,
        "each entry must be a CIDR or an IP address",
    );
    refused(
        b("nokeys", json!({"jwt": {"issuer": "x"}})).await,
        "jwt needs keys (from Secrets) or a jwksUrl",
    );
    refused(
        b(
            "wrongref",
            json!({"jwt": {"keys": [{"algorithm": "RS256", "secretRef": {"name": "jwt", "key": "pem"}}]}}),
        )
        .await,
        "keys need publicKeyRef",
    );
    refused(
        b("badalg", json!({"jwt": {"keys": [{"algorithm": "none", "secretRef": {"name": "jwt", "key": "x"}}]}})).await,
        "spec.jwt.keys[0].algorithm",
    );
    refused(
        b("badurl", json!({"jwt": {"jwksUrl": "ftp://idp/certs"}})).await,
        "spec.jwt.jwksUrl",
    );
    refused(
        b(
            "plainurl",
            json!({"jwt": {"jwksUrl": "http://idp.test/certs"}}),
        )
        .await,
        "spec.jwt.jwksUrl",
    );
    refused(
        b(
            "minrefresh",
            json!({"jwt": {"jwksUrl": "https://idp.test/certs", "jwksMinRefreshSeconds": 0}}),
        )
        .await,
        "spec.jwt.jwksMinRefreshSeconds",
    );
    refused(
        b(
            "source",
            json!({"jwt": {"keys": [hs], "sources": [{"kind": "query"}]}}),
        )
        .await,
        "a query or header source needs one",
    );
    refused(
        b("rate", json!({"rateLimit": {"requestsPerSecond": 0}})).await,
        "requestsPerSecond must be above 0",
    );
    refused(
        b("cache", json!({"cache": {"maxObjectBytes": 0}})).await,
        "spec.cache.maxObjectBytes",
    );
    refused(
        b(
            "leeway",
            json!({"jwt": {"keys": [hs], "leewaySeconds": 301}}),
        )
        .await,
        "spec.jwt.leewaySeconds",
    );
    b(
        "fine",
        json!({
            "jwt": {"keys": [hs], "jwksUrl": "https://idp.test/certs", "algorithms": ["HS256", "RS256"],
                "claims": [{"claim": "tier", "op": "in", "value": ["gold", "silver"]},
                           {"claim": "level", "op": "gt", "value": 2}],
                "permission": "read-write"},
            "ipFilter": {"allow": ["10.0.0.0/8", "fd00::/8", "192.168.1.7"], "deny": ["10.9.0.0/16"]},
            "cache": {}, "rateLimit": {"requestsPerSecond": 0.5, "burst": 3}
        }),
    )
    .await
    .unwrap();
    // The claim values come back as written.
    let fine = n.api::<S3Bucket>().get("fine").await.unwrap();
    let jwt = fine.spec.jwt.unwrap();
    assert_eq!(jwt.claims[0].value, json!(["gold", "silver"]));
    assert_eq!(
        fine.spec.cache.unwrap().max_object_bytes,
        1 << 20,
        "defaulted"
    );
}
