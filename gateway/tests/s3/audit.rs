//! The audit log: one JSON line per request with who, what and how it went, written to its
//! own file; no secrets, signatures or tokens in it; reads can be left out; a rotated file
//! is reopened.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::jwt::{claims, hmac_key, jwt_cfg, static_key, token};

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

async fn wait_records(path: &Path, n: usize) -> Vec<Value> {
    let ok = eventually(10, || async { records(path).len() >= n }).await;
    let r = records(path);
    assert!(ok, "expected {n} audit records, have {}: {r:#?}", r.len());
    r
}

fn find<'a>(records: &'a [Value], op: &str, status: u64) -> &'a Value {
    records
        .iter()
        .find(|r| r["operation"] == op && r["status"] == status)
        .unwrap_or_else(|| panic!("no {op} {status} record in {records:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_who_did_what_and_nothing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let b = unique_bucket("audited");
    let hs = hmac_key("HS256", "audit-key");
    let mut cfg = config_with(&[&b]);
    cfg.buckets[0].jwt = Some(jwt_cfg(vec![static_key(&hs)], None));
    let path = log.clone();
    let env = Env::start_with(cfg.clone(), move |s| {
        s.audit_log = Some(path.display().to_string())
    })
    .await;
    let s3 = env.client();
    let body = data(5000, 3);
    put(&s3, &b, "dir/report.csv", &body).await;
    assert!(get_bytes(&s3, &b, "dir/report.csv").await == body);
    // Presigned: the signature travels in the query.
    let url = presign(
        "GET",
        &env.host(),
        &format!("/{b}/dir/report.csv"),
        &Signer::admin(),
        Duration::from_secs(300),
        &[],
    );
    let signature = url.rsplit("X-Amz-Signature=").next().unwrap().to_string();
    env.send(RawRequest::new("GET", &url))
        .await
        .assert_status(200);
    // A forged signature, an anonymous request and a JWT.
    let bad = Signer::new(ADMIN_AK, "not-the-secret-key");
    let mut req = RawRequest::new("GET", &format!("/{b}/dir/report.csv"));
    sign_request(&mut req, &env.host(), &bad, Payload::Signed);
    env.send(req)
        .await
        .assert_error(403, "SignatureDoesNotMatch");
    env.send(RawRequest::new("DELETE", &format!("/{b}/dir/report.csv")))
        .await
        .assert_error(403, "AccessDenied");
    let jwt = token(&hs, &claims("svc-reporting"));
    env.send(
        RawRequest::new("GET", &format!("/{b}/dir/report.csv"))
            .header("authorization", &format!("Bearer {jwt}")),
    )
    .await
    .assert_status(200);

    let recs = wait_records(&log, 6).await;
    let p = find(&recs, "PutObject", 200);
    assert_eq!(p["principalType"], "access-key");
    assert_eq!(p["principal"], ADMIN_AK);
    assert_eq!(p["bucket"], b.as_str());
    assert_eq!(p["key"], "dir/report.csv");
    assert_eq!(p["bytesIn"], 5000);
    assert_eq!(p["method"], "PUT");
    assert_eq!(p["clientIp"], "127.0.0.1");
    assert!(p["requestId"].as_str().is_some_and(|id| id.len() == 16));
    assert!(p["latencyMs"].as_f64().is_some_and(|ms| ms > 0.0));
    assert!(p["time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.len() == 24));
    let gets: Vec<&Value> = recs
        .iter()
        .filter(|r| r["operation"] == "GetObject" && r["status"] == 200)
        .collect();
    assert_eq!(gets.len(), 3, "SigV4, presigned and JWT reads");
    assert!(gets.iter().all(|g| g["bytesOut"] == 5000));
    let by_jwt = gets
        .iter()
        .find(|g| g["principalType"] == "jwt")
        .expect("jwt read");
    assert_eq!(by_jwt["principal"], "svc-reporting");
    let forged = find(&recs, "GetObject", 403);
    assert_eq!(forged["errorCode"], "SignatureDoesNotMatch");
    assert_eq!(forged["principalType"], "anonymous");
    let anon = find(&recs, "DeleteObject", 403);
    assert_eq!(anon["errorCode"], "AccessDenied");
    assert!(anon.get("principal").is_none());

    let text = std::fs::read_to_string(&log).unwrap();
    for secret in [
        ADMIN_SK,
        "not-the-secret-key",
        &signature,
        &jwt,
        "Signature=",
        "Bearer",
    ] {
        assert!(!text.contains(secret), "the audit log contains {secret:?}");
    }
    let normal_log_lines = text.lines().filter(|l| l.contains("\"level\"")).count();
    assert_eq!(normal_log_lines, 0, "only audit records in the audit log");

    // Reads can be left out; writes and refusals stay.
    cfg.generation = 2;
    cfg.audit.reads = false;
    env.gw().set_config(cfg).expect("valid");
    let before = records(&log).len();
    get_bytes(&s3, &b, "dir/report.csv").await;
    let (status, _) = sdk_err(s3.get_object().bucket(&b).key("missing").send().await);
    assert_eq!(status, 404);
    put(&s3, &b, "after", b"x").await;
    let recs = wait_records(&log, before + 2).await;
    let new: Vec<(String, u64)> = recs[before..]
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap().to_string(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        new,
        vec![
            ("GetObject".to_string(), 404),
            ("PutObject".to_string(), 200)
        ]
    );

    // Rotation: the file is moved away; new records go to a new file at the path.
    std::fs::rename(&log, dir.path().join("audit.log.1")).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    put(&s3, &b, "rotated", b"x").await;
    let recs = wait_records(&log, 1).await;
    assert_eq!(recs[0]["key"], "rotated");
}
