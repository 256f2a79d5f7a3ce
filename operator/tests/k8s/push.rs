//! The config push against real gateways: `jets3-gateway` processes in Kubernetes mode (TLS
//! push listener, ES256 verify key), each on its own loopback address, registered as Pod
//! objects (created, then their status patched with that address: there is no kubelet).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};

use jets3_testkit::Pki;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::common::*;

const SERVER_NAME: &str = "gw-push.test";
const PUSH_PORT: u16 = 9443;
const SELECTOR: &str = "app.kubernetes.io/name=jets3,app.kubernetes.io/component=gateway";

/// The push channel's keys and certificates, as the chart makes them.
struct PushFiles {
    signing_key: PathBuf,
    verify_key: PathBuf,
    ca: PathBuf,
    tls_cert: PathBuf,
    tls_key: PathBuf,
}

impl PushFiles {
    fn new(dir: &Path) -> PushFiles {
        let pki = Pki::new();
        let (cert, key) = pki.serving(SERVER_NAME);
        let signing = rcgen::KeyPair::generate().unwrap();
        let file = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        PushFiles {
            signing_key: file("signing.pem", signing.serialize_pem()),
            verify_key: file("verify.pem", signing.public_key_pem()),
            ca: file("ca.crt", pki.ca_pem()),
            tls_cert: file("tls.crt", cert),
            tls_key: file("tls.key", key),
        }
    }

    /// The operator's push flags.
    fn operator_args(&self) -> Vec<String> {
        let path = |p: &Path| p.to_str().unwrap().to_string();
        [
            "--push-signing-key",
            &path(&self.signing_key),
            "--push-ca",
            &path(&self.ca),
            "--push-server-name",
            SERVER_NAME,
            "--gateway-selector",
            SELECTOR,
            "--gateway-push-port",
            &PUSH_PORT.to_string(),
            "--push-check-interval",
            "1s",
        ]
        .map(str::to_string)
        .to_vec()
    }
}

static NEXT_NET: AtomicU8 = AtomicU8::new(0);

/// A /24 of loopback addresses for one test (distinct from other tests and processes).
fn loopback_net() -> [u8; 3] {
    let n = NEXT_NET.fetch_add(1, Ordering::Relaxed);
    [
        127,
        100 + (std::process::id() % 100) as u8,
        n.wrapping_add(1),
    ]
}

/// A `jets3-gateway` process in Kubernetes mode on `ip` (S3 :9000, admin :9001, push :9443).
struct Gateway {
    child: Option<Child>,
    ip: Ipv4Addr,
    log: PathBuf,
}

fn gateway_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("JETS3_GATEWAY_BIN") {
        return bin.into();
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_jets3-operator")).with_file_name("jets3-gateway");
    assert!(
        bin.is_file(),
        "{} not found: build it (`cargo build -p jets3-gateway`; `cargo test --workspace` does) or set JETS3_GATEWAY_BIN",
        bin.display()
    );
    bin
}

impl Gateway {
    /// With TLS (the test CA's serving certificate) and `verify_key`.
    fn start(env: &Env, files: &PushFiles, ip: Ipv4Addr, verify_key: &Path) -> Gateway {
        let tls = [
            "--push-tls-cert".as_ref(),
            files.tls_cert.as_os_str(),
            "--push-tls-key".as_ref(),
            files.tls_key.as_os_str(),
        ];
        Gateway::start_with(env, ip, verify_key, &tls)
    }

    fn start_with(
        env: &Env,
        ip: Ipv4Addr,
        verify_key: &Path,
        push_args: &[&std::ffi::OsStr],
    ) -> Gateway {
        let log = env.dir.path().join(format!("gateway-{ip}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(gateway_binary())
            .env_clear()
            .env("JETS3_LOG", "info")
            .arg(format!("--listen={ip}:9000"))
            .arg(format!("--admin-listen={ip}:9001"))
            .arg(format!("--push-listen={ip}:{PUSH_PORT}"))
            .args(push_args)
            .arg("--push-verify-key")
            .arg(verify_key)
            .arg(format!("--nats-url={}", env.nats.url()))
            .arg("--region=eu-test-1")
            .arg("--shutdown-grace-seconds=1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("jets3-gateway runs");
        Gateway {
            child: Some(child),
            ip,
            log,
        }
    }

    fn s3_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, 9000))
    }

    async fn ready(&self) -> bool {
        matches!(
            http_get(&format!("http://{}:9001/readyz", self.ip)).await,
            Some((200, _))
        )
    }

    /// The generation of the config it holds (0: none).
    async fn generation(&self) -> Option<u64> {
        let (_, m) = http_get(&format!("http://{}:9001/metrics", self.ip)).await?;
        metric(&m, "jets3_config_generation")?.parse().ok()
    }

    async fn holds(&self, what: &str, generation: u64) {
        eventually(&format!("gateway {} holds {what}", self.ip), || async {
            (self.generation().await? >= generation).then_some(())
        })
        .await;
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- gateway {} log ----\n{}",
                self.ip,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// Registers a gateway pod at `ip`, as the kubelet would report it.
async fn add_pod(env: &Env, name: &str, ip: Ipv4Addr) {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), env.ns(0));
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "app.kubernetes.io/name": "jets3", "app.kubernetes.io/component": "gateway"}},
        "spec": {"automountServiceAccountToken": false,
                 "containers": [{"name": "gateway", "image": "jets3-gateway:test"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}]}})),
    )
    .await
    .unwrap();
}

async fn delete_pod(env: &Env, name: &str) {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), env.ns(0));
    pods.delete(name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
}

/// An Env whose namespace admits Pods (there is no controller-manager to make the default
/// ServiceAccount), with the push files and an operator pushing to the gateway pods.
async fn push_env(files_for_operator: impl FnOnce(&PushFiles) -> Vec<String>) -> (Env, PushFiles) {
    let mut env = Env::without_operator(1).await;
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    Api::<ServiceAccount>::namespaced(env.client.clone(), env.ns(0))
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let files = PushFiles::new(env.dir.path());
    let mut o = env.options();
    o.extra_args = files_for_operator(&files);
    env.operator = Some(env.start_operator("operator", &o));
    (env, files)
}

/// The operator's `gateways` report on `GET /config`: (pods, in sync).
async fn gateways(env: &Env) -> Option<(u64, u64)> {
    let (_, body) = env.operator().debug_config().await?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let g = &v["gateways"];
    Some((g["pods"].as_u64()?, g["in_sync"].as_u64()?))
}

async fn generation_of(env: &Env) -> u64 {
    let (_, body) = env.operator().debug_config().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["generation"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gateway_pod_gets_the_config_through_restarts_scale_up_and_a_dead_pod() {
    let (env, files) = push_env(PushFiles::operator_args).await;
    let ns = env.ns(0).to_string();
    let [a, b, c] = loopback_net();
    let ip = |n: u8| Ipv4Addr::new(a, b, c, n);

    // No pod yet: included resources are NoGateways.
    env.create_bucket(&ns, "early", json!({})).await;
    env.condition(
        &env.buckets(&ns),
        "early",
        "Served",
        "False",
        Some("NoGateways"),
    )
    .await;

    let mut gws = vec![
        Gateway::start(&env, &files, ip(1), &files.verify_key),
        Gateway::start(&env, &files, ip(2), &files.verify_key),
    ];
    assert!(!gws[0].ready().await, "no config yet, not ready");
    add_pod(&env, "gw-1", ip(1)).await;
    add_pod(&env, "gw-2", ip(2)).await;
    for gw in &gws {
        eventually("the gateway is ready after the push", || async {
            gw.ready().await.then_some(())
        })
        .await;
    }
    env.condition(&env.buckets(&ns), "early", "Served", "True", None)
        .await;

    env.create_bucket(&ns, "pushed", json!({})).await;
    env.create_credential(
        &ns,
        "app",
        json!({"grants": [{"bucket": "pushed", "permission": "read-write"}]}),
    )
    .await;
    env.condition(&env.buckets(&ns), "pushed", "Ready", "True", None)
        .await;
    env.condition(&env.credentials(&ns), "app", "Served", "True", None)
        .await;
    env.condition(&env.credentials(&ns), "app", "Ready", "True", None)
        .await;
    let (id, secret) = secret_keys(&env, &ns, "app").await;
    for gw in &gws {
        let s3 = s3(gw.s3_addr(), &id, &secret);
        assert_eq!(put(&s3, "pushed", "k", b"via push").await, "");
        assert_eq!(get(&s3, "pushed", "k").await.unwrap(), b"via push");
    }
    assert_eq!(gateways(&env).await, Some((2, 2)));
    let (_, m) = env.operator().get("/metrics").await.unwrap();
    assert_eq!(
        metric(&m, "jets3_operator_gateway_pods_in_sync").as_deref(),
        Some("2")
    );
    assert!(
        metric(&m, "jets3_operator_push_attempts_total")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 2
    );

    // A restarted gateway (a new process, no config) gets the config again, no CR change.
    let current = generation_of(&env).await;
    gws[0].kill();
    gws[0] = Gateway::start(&env, &files, ip(1), &files.verify_key);
    gws[0].holds("the config after its restart", current).await;
    let s3_restarted = s3(gws[0].s3_addr(), &id, &secret);
    assert_eq!(
        get(&s3_restarted, "pushed", "k").await.unwrap(),
        b"via push"
    );

    // Scale up: a new pod gets it.
    gws.push(Gateway::start(&env, &files, ip(3), &files.verify_key));
    add_pod(&env, "gw-3", ip(3)).await;
    gws[2].holds("the config as a new pod", current).await;
    eventually("three pods in sync", || async {
        (gateways(&env).await? == (3, 3)).then_some(())
    })
    .await;

    // A dead pod (process gone, pod still listed) holds up nobody: the others get a new
    // config promptly; what is new in it is Delivering, what was served stays served.
    gws[1].kill();
    env.create_bucket(&ns, "later", json!({})).await;
    env.condition(
        &env.buckets(&ns),
        "later",
        "Served",
        "False",
        Some("Delivering"),
    )
    .await;
    let newer = generation_of(&env).await;
    assert!(newer > current);
    let started = std::time::Instant::now();
    gws[0].holds("the newer config", newer).await;
    gws[2].holds("the newer config", newer).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the live pods got it in {:?}",
        started.elapsed()
    );
    eventually("two of three pods in sync", || async {
        (gateways(&env).await? == (3, 2)).then_some(())
    })
    .await;
    env.condition(&env.buckets(&ns), "pushed", "Served", "True", None)
        .await;
    let (_, m) = env.operator().get("/metrics").await.unwrap();
    assert!(
        m.contains("jets3_operator_push_failures_total{reason=\"connect\"}"),
        "{m}"
    );

    // The dead pod goes away: every remaining pod holds it, so it is served.
    delete_pod(&env, "gw-2").await;
    env.condition(&env.buckets(&ns), "later", "Served", "True", None)
        .await;

    // No pod at all: nothing is served.
    delete_pod(&env, "gw-1").await;
    delete_pod(&env, "gw-3").await;
    env.condition(
        &env.buckets(&ns),
        "later",
        "Served",
        "False",
        Some("NoGateways"),
    )
    .await;
    env.condition(
        &env.credentials(&ns),
        "app",
        "Ready",
        "False",
        Some("NoGateways"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_with_another_verify_key_refuses_the_push_and_the_operator_says_so() {
    let (env, files) = push_env(PushFiles::operator_args).await;
    let ns = env.ns(0).to_string();
    let [a, b, c] = loopback_net();
    let ip = Ipv4Addr::new(a, b, c, 1);
    let other = rcgen::KeyPair::generate().unwrap();
    let other_key = env.dir.path().join("other-verify.pem");
    std::fs::write(&other_key, other.public_key_pem()).unwrap();
    let gw = Gateway::start(&env, &files, ip, &other_key);
    add_pod(&env, "gw-1", ip).await;
    env.create_bucket(&ns, "refused", json!({})).await;
    env.condition(
        &env.buckets(&ns),
        "refused",
        "Served",
        "False",
        Some("Delivering"),
    )
    .await;
    eventually("the operator counts the 401", || async {
        let (_, m) = env.operator().get("/metrics").await?;
        metric(
            &m,
            "jets3_operator_push_failures_total{reason=\"unauthorized\"}",
        )
    })
    .await;
    assert!(env
        .operator()
        .log_text()
        .contains("the gateway refused the push token (401)"));
    assert!(!gw.ready().await);
    assert_eq!(gw.generation().await, Some(0));
    assert_eq!(gateways(&env).await, Some((1, 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_holding_a_newer_generation_makes_the_operator_publish_above_it() {
    use jets3_operator::hub::Published;
    use jets3_operator::push::client::PushClient;
    use jets3_operator::push::signer::Signer;

    let (env, files) = push_env(PushFiles::operator_args).await;
    let ns = env.ns(0).to_string();
    let [a, b, c] = loopback_net();
    let ip = Ipv4Addr::new(a, b, c, 1);
    // Before the operator knows the pod, someone (a previous leader whose state was lost)
    // pushed generation 50.
    let gw = Gateway::start(&env, &files, ip, &files.verify_key);
    let signer = Signer::new(files.signing_key.clone(), "jets3-operator", "jets3-gateway").unwrap();
    let client =
        PushClient::new(signer, Some(files.ca.clone()), Some(SERVER_NAME), PUSH_PORT).unwrap();
    let config = jets3_crds::GatewayConfig {
        region: "eu-test-1".into(),
        generation: 50,
        ..Default::default()
    };
    let body = serde_json::to_vec(&config).unwrap();
    let published = Published {
        generation: 50,
        hash: config.content_hash(),
        config: std::sync::Arc::new(config),
    };
    eventually("the gateway's push listener is up", || async {
        client.held(ip.into()).await.ok()
    })
    .await;
    // A generation no later one could follow is refused, even by a gateway without a config.
    let mut stuck = (*published.config).clone();
    stuck.generation = u64::MAX;
    let refused = client
        .push(
            ip.into(),
            &Published {
                generation: u64::MAX,
                hash: stuck.content_hash(),
                config: std::sync::Arc::new(stuck.clone()),
            },
            serde_json::to_vec(&stuck).unwrap().into(),
        )
        .await;
    assert!(
        matches!(&refused, Err(jets3_operator::push::client::Failure::Invalid(m)) if m.contains("generation out of range")),
        "{refused:?}"
    );
    client
        .push(ip.into(), &published, body.into())
        .await
        .expect("a first config is accepted");
    assert_eq!(gw.generation().await, Some(50));

    add_pod(&env, "gw-1", ip).await;
    env.create_bucket(&ns, "above", json!({})).await;
    gw.holds("a generation above 50", 51).await;
    env.condition(&env.buckets(&ns), "above", "Served", "True", None)
        .await;
    assert!(generation_of(&env).await > 50);
    let (_, m) = env.operator().get("/metrics").await.unwrap();
    assert!(
        m.contains("jets3_operator_push_failures_total{reason=\"stale\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_reach_three_gateways_quickly_and_an_operator_restart_causes_no_readiness_flap() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let (mut env, files) = push_env(PushFiles::operator_args).await;
    let ns = env.ns(0).to_string();
    let [a, b, c] = loopback_net();
    let ips: Vec<Ipv4Addr> = (1..=3).map(|n| Ipv4Addr::new(a, b, c, n)).collect();
    let gws: Vec<Gateway> = ips
        .iter()
        .map(|ip| Gateway::start(&env, &files, *ip, &files.verify_key))
        .collect();
    let started = Instant::now();
    for (i, ip) in ips.iter().enumerate() {
        add_pod(&env, &format!("gw-{i}"), *ip).await;
    }
    for gw in &gws {
        eventually("the gateway is ready", || async {
            gw.ready().await.then_some(())
        })
        .await;
    }
    eprintln!(
        "3 gateways ready {:?} after their pods appeared",
        started.elapsed()
    );
    env.create_bucket(&ns, "fast", json!({})).await;
    env.condition(&env.buckets(&ns), "fast", "Ready", "True", None)
        .await;

    // Apply of an S3Credential to its key working on all three gateways.
    let mut took = Vec::new();
    for i in 0..20 {
        let name = format!("key-{i}");
        let t0 = Instant::now();
        env.create_credential(
            &ns,
            &name,
            json!({"grants": [{"bucket": "fast", "permission": "read-write"}]}),
        )
        .await;
        let secrets = env.secrets(&ns);
        let (id, secret) = eventually("the Secret is written", || async {
            let s = secrets.get_opt(&name).await.ok()??;
            Some((
                secret_value(&s, "AWS_ACCESS_KEY_ID")?,
                secret_value(&s, "AWS_SECRET_ACCESS_KEY")?,
            ))
        })
        .await;
        for gw in &gws {
            let client = s3(gw.s3_addr(), &id, &secret);
            eventually("the key works", || async {
                (put(&client, "fast", "k", b"x").await.is_empty()).then_some(())
            })
            .await;
        }
        took.push(t0.elapsed());
    }
    took.sort();
    eprintln!(
        "S3Credential apply -> key works on 3 gateways: median {:?}, min {:?}, max {:?} (20 runs)",
        took[10], took[0], took[19]
    );
    assert!(took[10] < Duration::from_secs(5), "median {:?}", took[10]);

    // The operator restarts while the gateways run: none of them stops being ready, and the new
    // operator finds them in sync without pushing.
    let flapped = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (flapped, stop, ips) = (flapped.clone(), stop.clone(), ips.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                for ip in &ips {
                    if !matches!(
                        http_get(&format!("http://{ip}:9001/readyz")).await,
                        Some((200, _))
                    ) {
                        flapped.store(true, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let generation = generation_of(&env).await;
    env.operator = None;
    let mut o = env.options();
    o.extra_args = files.operator_args();
    env.operator = Some(env.start_operator("operator-2", &o));
    eventually("the new operator finds 3 pods in sync", || async {
        (gateways(&env).await? == (3, 3)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    assert!(
        !flapped.load(Ordering::Relaxed),
        "a gateway was not ready during the restart"
    );
    assert_eq!(generation_of(&env).await, generation);
    let (_, m) = env.operator().get("/metrics").await.unwrap();
    assert_eq!(
        metric(&m, "jets3_operator_push_attempts_total").as_deref(),
        Some("0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_pushes() {
    let (mut env, files) = push_env(|_| Vec::new()).await;
    env.operator = None; // replaced by two replicas with leader election
    let [a, b, c] = loopback_net();
    let ip = Ipv4Addr::new(a, b, c, 1);
    let gw = Gateway::start(&env, &files, ip, &files.verify_key);
    add_pod(&env, "gw-1", ip).await;
    let mut o = env.options();
    o.extra_args = files.operator_args();
    o.leader_election = Some(unique("lease"));
    let mut leader = env.start_operator("replica-a", &o);
    let sample = |op: &Operator, name: &'static str| {
        let url = format!("{}/metrics", op.metrics);
        async move {
            let (_, m) = http_get(&url).await?;
            metric(&m, name)
        }
    };
    eventually("replica-a leads", || async {
        (sample(&leader, "jets3_operator_leader").await? == "1").then_some(())
    })
    .await;
    let standby = env.start_operator("replica-b", &o);
    eventually("replica-b stands by", || async {
        let (code, body) = standby.get("/readyz").await?;
        (code == 200 && body == "standby").then_some(())
    })
    .await;
    eventually("the leader pushed", || async {
        gw.ready().await.then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        sample(&standby, "jets3_operator_gateway_pods")
            .await
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        sample(&standby, "jets3_operator_push_attempts_total")
            .await
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        sample(&leader, "jets3_operator_push_attempts_total")
            .await
            .as_deref(),
        Some("1")
    );

    // The standby takes over and finds the pod in sync.
    leader.kill();
    eventually("replica-b leads and sees the pod in sync", || async {
        (sample(&standby, "jets3_operator_gateway_pods_in_sync").await? == "1").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_only_when_both_sides_say_so() {
    let (env, files) = push_env(|f| {
        let mut args = f.operator_args();
        let ca = args.iter().position(|a| a == "--push-ca").unwrap();
        args.drain(ca..ca + 2);
        args.push("--push-plaintext".into());
        args
    })
    .await;
    let [a, b, c] = loopback_net();
    let (plain, tls) = (Ipv4Addr::new(a, b, c, 1), Ipv4Addr::new(a, b, c, 2));
    let insecure = ["--push-insecure".as_ref()];
    let plain_gw = Gateway::start_with(&env, plain, &files.verify_key, &insecure);
    let tls_gw = Gateway::start(&env, &files, tls, &files.verify_key);
    add_pod(&env, "gw-plain", plain).await;
    add_pod(&env, "gw-tls", tls).await;
    eventually("the plain HTTP gateway is ready", || async {
        plain_gw.ready().await.then_some(())
    })
    .await;
    // A TLS listener does not speak plain HTTP: that pod stays without config.
    eventually("the TLS gateway counts as failing", || async {
        let (_, m) = env.operator().get("/metrics").await?;
        metric(&m, "jets3_operator_push_failures_total{reason=\"http\"}")
    })
    .await;
    assert!(!tls_gw.ready().await);
    assert_eq!(gateways(&env).await, Some((2, 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_key_the_gateway_cannot_parse_leaves_out_only_its_bucket() {
    let (env, files) = push_env(PushFiles::operator_args).await;
    let ns = env.ns(0).to_string();
    let [a, b, c] = loopback_net();
    let ip = Ipv4Addr::new(a, b, c, 1);
    let gw = Gateway::start(&env, &files, ip, &files.verify_key);
    add_pod(&env, "gw-1", ip).await;
    env.create_bucket(&ns, "data", json!({})).await;
    let grant = json!({"grants": [{"bucket": "data", "permission": "read-write"}]});
    env.create_credential(&ns, "old", grant.clone()).await;
    env.condition(&env.credentials(&ns), "old", "Ready", "True", None)
        .await;
    let (old_id, old_secret) = secret_keys(&env, &ns, "old").await;
    let old = s3(gw.s3_addr(), &old_id, &old_secret);
    assert_eq!(put(&old, "data", "k", b"before").await, "");

    // A PEM that starts right but holds no key: the old check let it through.
    crate::access::put_secret(
        &env,
        &ns,
        "bad-pem",
        "key.pem",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .await;
    env.create_bucket(
        &ns,
        "badjwt",
        json!({"jwt": {"keys": [{"algorithm": "ES256",
            "publicKeyRef": {"name": "bad-pem", "key": "key.pem"}}]}}),
    )
    .await;
    env.condition(
        &env.buckets(&ns),
        "badjwt",
        "BucketProvisioned",
        "True",
        None,
    )
    .await;

    // Later changes still reach the gateway: a new key works, a deleted one stops working.
    env.create_credential(&ns, "new", grant).await;
    env.condition(&env.credentials(&ns), "new", "Ready", "True", None)
        .await;
    let (new_id, new_secret) = secret_keys(&env, &ns, "new").await;
    let new = s3(gw.s3_addr(), &new_id, &new_secret);
    assert_eq!(get(&new, "data", "k").await.unwrap(), b"before");
    env.delete(&env.credentials(&ns), "old").await;
    eventually("the deleted credential's key is refused", || async {
        (get(&old, "data", "k").await == Err("InvalidAccessKeyId".into())).then_some(())
    })
    .await;

    let bad = env
        .condition(
            &env.buckets(&ns),
            "badjwt",
            "Served",
            "False",
            Some("InvalidConfig"),
        )
        .await;
    let message = condition_of(&bad, "Served").message;
    assert!(
        message.contains("jwt.keys[0].publicKeyPem") && !message.contains("AAAA"),
        "{message}"
    );
    let (_, m) = env.operator().get("/metrics").await.unwrap();
    assert!(
        !m.contains("jets3_operator_push_failures_total{reason=\"invalid\"}"),
        "no gateway refused a config: {m}"
    );
}
