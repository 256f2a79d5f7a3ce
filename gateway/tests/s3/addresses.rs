//! Per-bucket IP allowlists and blocklists (CIDRs), with the client address taken from
//! `X-Forwarded-For` only behind trusted proxies.

use jets3_crds::IpFilter;

use crate::common::*;

fn from(b: &str, client: Option<&str>) -> RawRequest {
    let req = RawRequest::new("GET", &format!("/{b}/k"));
    match client {
        Some(ip) => req.header("x-forwarded-for", ip),
        None => req,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_address_filters() {
    let (filtered, open) = (unique_bucket("ipf"), unique_bucket("ipf-open"));
    let mut cfg = config_with(&[&filtered, &open]);
    cfg.buckets[0].ip_filter = Some(IpFilter {
        allow: vec!["203.0.113.0/24".into(), "2001:db8::/32".into()],
        deny: vec!["203.0.113.66".into()],
    });
    let env = Env::start_with(cfg, |s| s.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    // The harness talks from 127.0.0.1, which is not allowed: upload with a forwarded address.
    for b in [&filtered, &open] {
        env.send_signed(
            RawRequest::new("PUT", &format!("/{b}/k"))
                .header("x-forwarded-for", "203.0.113.5")
                .body("v"),
        )
        .await
        .assert_status(200);
    }
    for (client, want) in [
        (Some("203.0.113.5"), 200),
        (Some("2001:db8::7"), 200),
        (Some("203.0.113.66"), 403),
        (Some("198.51.100.1"), 403),
        (Some("198.51.100.1, 203.0.113.5"), 200),
        (Some("203.0.113.5, 198.51.100.1"), 403),
        (None, 403),
    ] {
        let r = env.send_signed(from(&filtered, client)).await;
        if want == 200 {
            r.assert_status(200);
        } else {
            r.assert_error(403, "AccessDenied");
        }
        // A bucket without a filter serves everyone.
        env.send_signed(from(&open, client))
            .await
            .assert_status(200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_from_untrusted_peers_are_ignored() {
    let b = unique_bucket("ipf-local");
    let mut cfg = config_with(&[&b]);
    cfg.buckets[0].ip_filter = Some(IpFilter {
        allow: vec!["127.0.0.0/8".into()],
        deny: vec![],
    });
    let env = Env::start_with(cfg, |s| s.trusted_proxies = vec!["10.0.0.0/8".into()]).await;
    put(&env.client(), &b, "k", b"v").await;
    // 127.0.0.1 is the peer and not a trusted proxy: what it forwards does not count.
    env.send_signed(from(&b, Some("198.51.100.1")))
        .await
        .assert_status(200);
    let mut cfg = env.config.clone();
    cfg.generation = 2;
    cfg.buckets[0].ip_filter = Some(IpFilter {
        allow: vec!["198.51.100.1".into()],
        deny: vec![],
    });
    env.gw().set_config(cfg).expect("valid");
    env.send_signed(from(&b, Some("198.51.100.1")))
        .await
        .assert_error(403, "AccessDenied");
}
