//! Writers racing on one key of a replicated bucket, through two gateways: NATS refuses
//! a metadata publish while another one for the same key is being replicated, and that is
//! a lost race (tried again, or 412 for a conditional write), never a 500.

use std::collections::HashSet;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use jets3_gateway::{GatewayHandle, NatsSettings};

use crate::common::*;

async fn gateway_on(cluster: &NatsCluster, config: &jets3_crds::GatewayConfig) -> GatewayHandle {
    init_logging();
    let mut s = settings_for(&cluster.urls()[0]);
    s.nats = NatsSettings {
        servers: cluster.urls(),
        ..Default::default()
    };
    let gw = jets3_gateway::start(s, Some(config.clone()))
        .await
        .expect("gateway start");
    let admin = gw.admin_addr().expect("admin");
    assert!(ready_within(admin, 60).await, "gateway ready");
    gw
}

/// Sixteen clients, half on each of two gateways, of one three-replica bucket.
async fn racers(cluster: &NatsCluster, b: &str) -> (Vec<GatewayHandle>, Vec<Client>) {
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
    let (_gws, clients) = racers(&cluster, &b).await;
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
        endpoint: format!("http://{}", _gws[0].s3_addr()),
        creds: Some((ADMIN_AK.into(), ADMIN_SK.into())),
        ..Default::default()
    });
    let got = s3
        .get_object()
        .bucket(&b)
        .key("hot")
        .send()
        .await
        .expect("get");
    let got = got
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec();
    assert!(written.contains(&got), "the key holds one of the writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_racing_on_a_key_one_wins_the_others_get_412() {
    let cluster = NatsCluster::start(3).await;
    let b = unique_bucket("race");
    let (gws, clients) = racers(&cluster, &b).await;
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
        let s3 = &clients[0];
        let got = s3
            .get_object()
            .bucket(&b)
            .key(&key)
            .send()
            .await
            .expect("get");
        let got = got
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec();
        assert_eq!(got, won[0], "round {round}: the winner's bytes");
    }
    drop(gws);
}
