//! Writes to a replicated bucket. A small object's chunk and metadata go as one atomic
//! batch (both land or neither; the chunk right before the metadata), and as two publishes
//! when NATS takes no batch. Writers race on one key through two gateways: NATS refuses a
//! metadata publish while another one for the same key is being replicated, and that is a
//! lost race (tried again, or 412 for a conditional write), never a 503 or a 500.

use std::collections::HashSet;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use jets3_gateway::store::meta::{chunk_subject, meta_subject};
use jets3_gateway::GatewayHandle;

use crate::common::*;
use crate::failover::gateway_on;

/// Sixteen clients, half on each of two gateways, of one three-replica bucket.
async fn writers(cluster: &NatsCluster, b: &str) -> (Vec<GatewayHandle>, Vec<Client>) {
    let mut cfg = config_with(&[]);
    let mut bc = bucket_cfg(b);
    bc.replicas = 3;
    cfg.buckets.push(bc);
    let gws = vec![
        gateway_on(cluster, &cfg).await,
        gateway_on(cluster, &cfg).await,
    ];
    cluster.leader_of(&format!("OBJ_{b}")).await;
    let clients = (0..16)
        .map(|i| {
            s3_client(ClientOpts {
                endpoint: format!("http://{}", gws[i % 2].s3_addr()),
                creds: Some((ADMIN_AK.into(), ADMIN_SK.into())),
                ..Default::default()
            })
        })
        .collect();
    (gws, clients)
}

fn status_of<E: ProvideErrorMetadata + std::fmt::Debug>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> String {
    match e.raw_response() {
        Some(r) => format!("{} {:?}", r.status().as_u16(), e.code()),
        None => format!("transport {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blind_writes_racing_on_a_key_all_succeed() {
    let cluster = NatsCluster::start(3).await;
    let b = unique_bucket("race");
    let (gws, clients) = writers(&cluster, &b).await;
    let mut tasks = Vec::new();
    for (i, s3) in clients.into_iter().enumerate() {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for n in 0..6u64 {
                let body = data(2048, (i as u64) << 8 | n);
                let r = s3
                    .put_object()
                    .bucket(&b)
                    .key("hot")
                    .body(ByteStream::from(body.clone()))
                    .send()
                    .await;
                out.push((body, r.map(|_| ()).map_err(|e| status_of(&e))));
            }
            out
        }));
    }
    let mut written = HashSet::new();
    let mut failures = Vec::new();
    for t in tasks {
        for (body, r) in t.await.expect("task") {
            match r {
                Ok(()) => {
                    written.insert(body);
                }
                Err(e) => failures.push(e),
            }
        }
    }
    assert!(failures.is_empty(), "blind writes failed: {failures:?}");
    let s3 = s3_client(ClientOpts {
        endpoint: format!("http://{}", gws[0].s3_addr()),
        creds: Some((ADMIN_AK.into(), ADMIN_SK.into())),
        ..Default::default()
    });
    let got = get_bytes(&s3, &b, "hot").await;
    assert!(written.contains(&got), "the key holds one of the writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_racing_on_a_key_one_wins_the_others_get_412() {
    let cluster = NatsCluster::start(3).await;
    let b = unique_bucket("race");
    let (gws, clients) = writers(&cluster, &b).await;
    for round in 0..4 {
        let key = format!("new{round}");
        let mut tasks = Vec::new();
        for (i, s3) in clients.iter().cloned().enumerate() {
            let (b, key) = (b.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                let body = data(2048, i as u64);
                let r = s3
                    .put_object()
                    .bucket(&b)
                    .key(&key)
                    .if_none_match("*")
                    .body(ByteStream::from(body.clone()))
                    .send()
                    .await;
                (body, r.map(|_| ()).map_err(|e| status_of(&e)))
            }));
        }
        let (mut won, mut others) = (Vec::new(), Vec::new());
        for t in tasks {
            match t.await.expect("task") {
                (body, Ok(())) => won.push(body),
                (_, Err(e)) if e.starts_with("412 ") => {}
                (_, Err(e)) => others.push(e),
            }
        }
        assert!(others.is_empty(), "round {round}: {others:?}");
        assert_eq!(won.len(), 1, "round {round}: exactly one create wins");
        let got = get_bytes(&clients[0], &b, &key).await;
        assert_eq!(got, won[0], "round {round}: the winner's bytes");
    }
    drop(gws);
}

/// The metadata message of `key` in bucket `b`: its sequence and `jets3.seq`.
async fn meta_of(js: &async_nats::jetstream::Context, b: &str, key: &str) -> (u64, String, String) {
    let stream = js.get_stream(format!("OBJ_{b}")).await.expect("stream");
    let m = stream
        .direct_get_last_for_subject(meta_subject(b, key))
        .await
        .expect("metadata");
    let info: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
    let seq = info["metadata"]["jets3.seq"].as_str().unwrap_or_default();
    let nuid = info["nuid"].as_str().expect("nuid");
    (m.sequence, seq.to_string(), nuid.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_object_is_one_atomic_batch_and_reads_natively() {
    let cluster = NatsCluster::start(3).await;
    let b = unique_bucket("batch");
    let (gws, clients) = writers(&cluster, &b).await;
    let client = async_nats::connect(cluster.urls()[2].as_str())
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client);
    let small = data(4096, 1);
    put(&clients[0], &b, "small", &small).await;
    let (meta_seq, seq, nuid) = meta_of(&js, &b, "small").await;
    assert_eq!(seq, "-1", "the chunk sits right before the metadata");
    let stream = js.get_stream(format!("OBJ_{b}")).await.expect("stream");
    let chunk = stream.direct_get(meta_seq - 1).await.expect("chunk");
    assert_eq!(chunk.subject.as_str(), chunk_subject(&b, &nuid));
    assert_eq!(chunk.payload.as_ref(), small.as_slice());
    // Through the other gateway, and as a native client reads it.
    assert_eq!(get_bytes(&clients[1], &b, "small").await, small);
    let store = js.get_object_store(&b).await.expect("object store");
    let mut native = Vec::new();
    let mut obj = store.get("small").await.expect("native get");
    tokio::io::AsyncReadExt::read_to_end(&mut obj, &mut native)
        .await
        .expect("native read");
    assert_eq!(native, small);
    // Two chunks: published as they arrive, their sequences recorded.
    let large = data(200 * 1024, 2);
    put(&clients[0], &b, "large", &large).await;
    let (_, seq, _) = meta_of(&js, &b, "large").await;
    assert!(seq.contains(','), "absolute chunk sequences: {seq}");
    assert_eq!(get_bytes(&clients[1], &b, "large").await, large);
    drop(gws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_go_on_as_two_publishes_when_nats_takes_no_batch() {
    // One batch in flight per stream, and the test holds one open: NATS refuses every
    // batch of the gateways'.
    let cluster = NatsCluster::start_with(
        3,
        "jetstream { limits { batch { max_inflight_per_stream: 1, timeout: \"120s\" } } }\n",
    )
    .await;
    let b = unique_bucket("batch");
    let (gws, clients) = writers(&cluster, &b).await;
    let client = async_nats::connect(cluster.urls()[1].as_str())
        .await
        .expect("connect");
    let mut first = async_nats::HeaderMap::new();
    first.insert("Nats-Batch-Id", "held-open");
    first.insert("Nats-Batch-Sequence", "1");
    client
        .request_with_headers(chunk_subject(&b, "held"), first, "x".into())
        .await
        .expect("the stream took the batch's first message");
    let mut tasks = Vec::new();
    for (i, s3) in clients.iter().cloned().enumerate() {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for n in 0..4u64 {
                let (key, body) = (format!("k{i}-{n}"), data(3000, (i as u64) << 8 | n));
                let r = s3
                    .put_object()
                    .bucket(&b)
                    .key(&key)
                    .body(ByteStream::from(body.clone()))
                    .send()
                    .await;
                out.push((key, body, r.map(|_| ()).map_err(|e| status_of(&e))));
            }
            out
        }));
    }
    let js = async_nats::jetstream::new(client);
    let mut written = 0;
    for t in tasks {
        for (key, body, r) in t.await.expect("task") {
            assert_eq!(r, Ok(()), "{key}");
            assert_eq!(get_bytes(&clients[0], &b, &key).await, body, "{key}");
            let (_, seq, _) = meta_of(&js, &b, &key).await;
            assert!(seq.contains(','), "{key}: published on its own ({seq})");
            written += 1;
        }
    }
    // A chunk and a metadata message per object: nothing of a refused batch landed.
    let mut stream = js.get_stream(format!("OBJ_{b}")).await.expect("stream");
    let info = stream.info().await.expect("info");
    assert_eq!(info.state.messages, 2 * written);
    drop(gws);
}
