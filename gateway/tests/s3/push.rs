//! The config push channel (Kubernetes mode): a gateway started without a config, pushes
//! over TLS with ES256 tokens bound to the pod, the request and its body, used once, and
//! every way a push is refused without changing anything.
//! Keys and certificates are made here the way the chart makes them: an ES256 key whose
//! public half reaches the gateway as a PEM file, a CA and a serving certificate for the
//! push Service's DNS name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use jets3_crds::{GatewayConfig, Permission};
use jets3_gateway::PushSettings;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use crate::common::*;

/// The push Service name the serving certificate is made for (the chart's SAN).
const SERVER_NAME: &str = "jets3-gateway-push.test.svc";
const ISS: &str = "jets3-operator";
const AUD: &str = "jets3-gateway";
const HASH: &str = "x-jets3-config-hash";
/// The address the push listener is on: the pod IP the operator signs tokens for.
const POD: &str = "127.0.0.1";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims of a token for `method path` with `body` on [`POD`], issued at `iat`, valid for
/// `lifetime` seconds, with a fresh `jti`.
fn claims_for(method: &str, path: &str, body: &[u8], iat: u64, lifetime: u64) -> Value {
    use sha2::Digest as _;
    json!({
        "iss": ISS, "aud": AUD, "iat": iat, "exp": iat + lifetime,
        "jti": format!("{:032x}", rand::random::<u128>()),
        "pod": POD,
        "req": format!("{method} {path}"),
        "body_sha256": hex::encode(sha2::Sha256::digest(body)),
    })
}

/// A `PUT /v1/config` token for `cfg`'s body, issued at `iat`, valid for `lifetime` seconds.
fn put_claims(cfg: &GatewayConfig, iat: u64, lifetime: u64) -> Value {
    claims_for("PUT", "/v1/config", &body_of(cfg), iat, lifetime)
}

/// The body a config is pushed as.
fn body_of(cfg: &GatewayConfig) -> Vec<u8> {
    serde_json::to_vec(cfg).unwrap()
}

/// A compact JWS: `header.claims.signature`, each base64url without padding.
fn jwt(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let message = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let signature = sign(message.as_bytes());
    format!("{message}.{}", b64.encode(signature))
}

/// The operator's ES256 key pair.
struct SigningKey {
    pair: KeyPair,
    ring: EcdsaKeyPair,
}

impl SigningKey {
    fn new() -> SigningKey {
        let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let ring = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &pair.serialize_der(),
            &SystemRandom::new(),
        )
        .unwrap();
        SigningKey { pair, ring }
    }

    fn public_key_pem(&self) -> String {
        self.pair.public_key_pem()
    }

    /// A self-signed certificate that carries the public key (Helm's
    /// `genSelfSignedCertWithKey`).
    fn certificate_pem(&self) -> String {
        CertificateParams::new(vec!["jets3-operator".to_string()])
            .unwrap()
            .self_signed(&self.pair)
            .unwrap()
            .pem()
    }

    fn token_with(&self, header: &Value, claims: &Value) -> String {
        jwt(header, claims, |m| {
            self.ring
                .sign(&SystemRandom::new(), m)
                .unwrap()
                .as_ref()
                .to_vec()
        })
    }

    fn token(&self, claims: &Value) -> String {
        self.token_with(&json!({"alg": "ES256", "typ": "JWT"}), claims)
    }

    /// What the operator sends for `method path` with `body`: 30 s lifetime, issued now.
    fn token_for(&self, method: &str, path: &str, body: &[u8]) -> String {
        self.token(&claims_for(method, path, body, now(), 30))
    }

    /// A token for pushing `cfg`.
    fn put_token(&self, cfg: &GatewayConfig) -> String {
        self.token(&put_claims(cfg, now(), 30))
    }

    /// A token for `GET /v1/config`.
    fn get_token(&self) -> String {
        self.token_for("GET", "/v1/config", b"")
    }
}

/// A gateway in Kubernetes mode and an operator's view of it.
struct Push {
    env: Env,
    dir: tempfile::TempDir,
    key: SigningKey,
    pki: Option<Pki>,
    addr: SocketAddr,
}

impl Push {
    /// TLS, the verify key as a `PUBLIC KEY` PEM, no config.
    async fn start() -> Push {
        Push::start_with(true, None).await
    }

    async fn start_with(tls: bool, config: Option<GatewayConfig>) -> Push {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::new();
        let verify = dir.path().join("verify.pem");
        std::fs::write(&verify, key.public_key_pem()).unwrap();
        let pki = tls.then(Pki::new);
        let (cert_file, key_file) = match &pki {
            Some(pki) => {
                let (cert, key) = pki.serving(SERVER_NAME);
                let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
                std::fs::write(&c, cert).unwrap();
                std::fs::write(&k, key).unwrap();
                (Some(c), Some(k))
            }
            None => (None, None),
        };
        let nats = NatsServer::start().await;
        let mut settings = settings_for(&nats.url());
        settings.push = Some(PushSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls_cert_file: cert_file,
            tls_key_file: key_file,
            insecure: !tls,
            verify_key_file: verify,
            audience: AUD.into(),
            issuer: ISS.into(),
        });
        let env = Env::launch(nats, settings, config).await;
        let addr = env.gw().push_addr().expect("push listener");
        Push {
            env,
            dir,
            key,
            pki,
            addr,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn tls_stream(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let pki = self.pki.as_ref().expect("TLS gateway");
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        pki.connector(None)
            .connect(ServerName::try_from(SERVER_NAME).unwrap(), tcp)
            .await
            .expect("TLS handshake with the push listener")
    }

    /// Sends one request over TLS (or plain HTTP for an insecure gateway).
    async fn send(&self, req: RawRequest) -> RawResponse {
        let bytes = req.to_bytes(SERVER_NAME);
        // Boxed: the TLS handshake future is large, and tests await many of these.
        Box::pin(async {
            match &self.pki {
                Some(_) => exchange(self.tls_stream().await, &bytes).await,
                None => send_raw(self.addr, &bytes).await,
            }
        })
        .await
    }

    /// `PUT /v1/config` with `token` and the right hash header.
    async fn put_with(&self, token: &str, cfg: &GatewayConfig) -> RawResponse {
        self.send(
            RawRequest::new("PUT", "/v1/config")
                .header("authorization", &format!("Bearer {token}"))
                .header("content-type", "application/json")
                .header(HASH, &cfg.content_hash())
                .body(body_of(cfg)),
        )
        .await
    }

    async fn push(&self, cfg: &GatewayConfig) -> RawResponse {
        self.put_with(&self.key.put_token(cfg), cfg).await
    }

    /// Pushes `cfg`, expects it applied, and waits for its declared buckets.
    async fn push_ok(&self, cfg: &GatewayConfig) {
        let r = self.push(cfg).await;
        assert_eq!(r.status, 200, "push applied: {}", r.text());
        assert_eq!(
            json_of(&r),
            json!({"generation": cfg.generation, "hash": cfg.content_hash()})
        );
        self.env.wait_declared_buckets(cfg).await;
    }

    /// `GET /v1/config`.
    async fn held(&self) -> Value {
        let r = self
            .send(
                RawRequest::new("GET", "/v1/config")
                    .header("authorization", &format!("Bearer {}", self.key.get_token())),
            )
            .await;
        assert_eq!(r.status, 200, "GET /v1/config: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        json_of(&r)
    }

    async fn held_generation(&self) -> Value {
        self.held().await["generation"].clone()
    }

    /// `jets3_config_pushes_total{result="..."}`.
    async fn pushes(&self, result: &str) -> u64 {
        let r = self.env.admin_get("/metrics").await;
        let prefix = format!("jets3_config_pushes_total{{result=\"{result}\"}} ");
        r.text()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
            .parse()
            .unwrap()
    }
}

/// Writes `bytes` on `stream` and reads one response.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, bytes: &[u8]) -> RawResponse {
    stream.write_all(bytes).await.expect("write request");
    let mut buf = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        read_response(&mut stream, &mut buf, false, true),
    )
    .await
    .expect("response within 60 s")
    .expect("read response")
}

fn json_of(r: &RawResponse) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("JSON body expected ({e}): {}", r.text()))
}

/// A config with the admin key and `bucket`, at `generation`.
fn config(bucket: &str, generation: u64) -> GatewayConfig {
    GatewayConfig {
        generation,
        ..config_with(&[bucket])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_first_push_then_serves_s3() {
    let p = Push::start().await;
    let env = &p.env;
    let r = env.admin_get("/readyz").await;
    assert_eq!((r.status, r.text().trim()), (503, "no config yet"));
    let r = env.send(RawRequest::new("GET", "/")).await;
    r.assert_error(503, "ServiceUnavailable");
    let (status, code) = sdk_err(env.client().list_buckets().send().await);
    assert_eq!((status, code.as_str()), (503, "ServiceUnavailable"));
    assert_eq!(p.held().await, json!({"generation": null, "hash": null}));

    let b = unique_bucket("push");
    let cfg = config(&b, 1);
    p.push_ok(&cfg).await;
    env.wait_ready().await;
    put(&env.client(), &b, "k", b"served after the push").await;
    assert_eq!(
        get_bytes(&env.client(), &b, "k").await,
        b"served after the push"
    );
    assert_eq!(
        p.held().await,
        json!({"generation": 1, "hash": cfg.content_hash()})
    );
    assert_eq!(p.pushes("applied").await, 1);
    let metrics = env.admin_get("/metrics").await.text();
    assert!(
        metrics.lines().any(|l| l == "jets3_config_generation 1"),
        "generation gauge: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_and_change_nothing() {
    let p = Push::start().await;
    let b = unique_bucket("tokens");
    p.push_ok(&config(&b, 1)).await;
    let next = config(&b, 2);
    let t = now();
    let other = SigningKey::new();
    let public_pem = p.key.public_key_pem();
    let hs256 = jwt(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &put_claims(&next, t, 30),
        |m| {
            use hmac::Mac as _;
            let mut mac =
                hmac::Hmac::<sha2::Sha256>::new_from_slice(public_pem.as_bytes()).unwrap();
            mac.update(m);
            mac.finalize().into_bytes().to_vec()
        },
    );
    let unsigned = jwt(&json!({"alg": "none"}), &put_claims(&next, t, 30), |_| {
        Vec::new()
    });
    let with = |patch: Value| {
        let mut c = put_claims(&next, t, 30);
        for (k, v) in patch.as_object().unwrap() {
            match v {
                Value::Null => c.as_object_mut().unwrap().remove(k),
                v => c.as_object_mut().unwrap().insert(k.clone(), v.clone()),
            };
        }
        p.key.token(&c)
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        ("not a Bearer token", Some("Basic dXNlcjpwYXNz".into())),
        ("garbage", Some("Bearer not.a.jwt".into())),
        (
            "expired beyond the 10 s leeway",
            Some(p.key.token(&put_claims(&next, t - 75, 60))),
        ),
        ("wrong audience", Some(with(json!({"aud": "someone-else"})))),
        ("wrong issuer", Some(with(json!({"iss": "mallory"})))),
        (
            "lifetime over 60 s",
            Some(p.key.token(&put_claims(&next, t, 61))),
        ),
        (
            "issued in the future",
            Some(p.key.token(&put_claims(&next, t + 120, 30))),
        ),
        ("not yet valid (nbf)", Some(with(json!({"nbf": t + 120})))),
        (
            "exp as a string",
            Some(with(json!({"exp": (t + 30).to_string()}))),
        ),
        ("no exp", Some(with(json!({"exp": null})))),
        ("no iat", Some(with(json!({"iat": null})))),
        ("no aud", Some(with(json!({"aud": null})))),
        ("no iss", Some(with(json!({"iss": null})))),
        ("no jti", Some(with(json!({"jti": null})))),
        ("a jti too short", Some(with(json!({"jti": "abc"})))),
        ("no pod", Some(with(json!({"pod": null})))),
        ("for another pod", Some(with(json!({"pod": "127.0.0.2"})))),
        ("no req", Some(with(json!({"req": null})))),
        ("for a GET", Some(with(json!({"req": "GET /v1/config"})))),
        ("no body hash", Some(with(json!({"body_sha256": null})))),
        (
            "for another body",
            Some(p.key.token(&put_claims(&config(&b, 3), t, 30))),
        ),
        (
            "signed by another key",
            Some(other.token(&put_claims(&next, t, 30))),
        ),
        ("HS256 with the public key as secret", Some(hs256)),
        ("alg none", Some(unsigned)),
    ];
    for (what, token) in &cases {
        let mut req = RawRequest::new("PUT", "/v1/config")
            .header(HASH, &next.content_hash())
            .body(body_of(&next));
        if let Some(token) = token {
            let value = match token.starts_with("Basic ") || token.starts_with("Bearer ") {
                true => token.clone(),
                false => format!("Bearer {token}"),
            };
            req = req.header("authorization", &value);
        }
        let r = p.send(req).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_eq!(json_of(&r), json!({"error": "unauthorized"}), "{what}");
    }
    // GET needs a token as well, and so does any other path.
    for path in ["/v1/config", "/elsewhere"] {
        let r = p.send(RawRequest::new("GET", path)).await;
        assert_eq!(r.status, 401, "GET {path} without a token");
    }
    assert_eq!(p.held_generation().await, json!(1), "nothing changed");
    assert_eq!(p.pushes("unauthorized").await, cases.len() as u64 + 2);
    assert_eq!(p.pushes("applied").await, 1);

    // Within the 10 s leeway a just-expired token still counts.
    let r = p
        .put_with(&p.key.token(&put_claims(&next, t - 65, 60)), &next)
        .await;
    assert_eq!(
        r.status,
        200,
        "expired 5 s ago, inside the leeway: {}",
        r.text()
    );
    assert_eq!(p.held_generation().await, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_good_once_for_one_pod_one_request_and_one_body() {
    let p = Push::start().await;
    let b = unique_bucket("bound");
    p.push_ok(&config(&b, 1)).await;
    let next = config(&b, 2);

    // A token the operator signed for another pod (a pod that logged it, say) is refused here.
    let mut for_a = put_claims(&next, now(), 30);
    for_a["pod"] = json!("10.1.2.3");
    let r = p.put_with(&p.key.token(&for_a), &next).await;
    assert_eq!(r.status, 401, "a token for pod A on pod B: {}", r.text());

    // A valid token with another body under it (same hash header as that body).
    let token = p.key.put_token(&next);
    let mut swapped = next.clone();
    swapped.credentials.clear();
    let r = p.put_with(&token, &swapped).await;
    assert_eq!(
        r.status,
        401,
        "a body swapped under the token: {}",
        r.text()
    );
    assert_eq!(p.held_generation().await, json!(1));

    // Replayed: the same token and body a second time. (The swapped attempt above already used
    // this token up: a token is spent by its first request.)
    let token = p.key.put_token(&next);
    assert_eq!(p.put_with(&token, &next).await.status, 200);
    let r = p.put_with(&token, &next).await;
    assert_eq!(r.status, 401, "a replayed push: {}", r.text());
    let get = p.key.get_token();
    let read =
        || RawRequest::new("GET", "/v1/config").header("authorization", &format!("Bearer {get}"));
    assert_eq!(p.send(read()).await.status, 200);
    assert_eq!(p.send(read()).await.status, 401, "a replayed GET");
    assert_eq!(p.held_generation().await, json!(2));
    assert_eq!(p.pushes("applied").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_far_ahead_is_refused_and_blocks_nothing() {
    let p = Push::start().await;
    let b = unique_bucket("far");
    // Even a gateway without a config takes no generation beyond the step.
    let r = p.push(&config(&b, u64::MAX)).await;
    assert_eq!(r.status, 422, "u64::MAX on a fresh gateway: {}", r.text());
    assert_eq!(json_of(&r)["error"], json!("generation out of range"));
    p.push_ok(&config(&b, 7)).await;
    for far in [u64::MAX, 7 + (1 << 32) + 1] {
        let r = p.push(&config(&b, far)).await;
        assert_eq!(r.status, 422, "generation {far}: {}", r.text());
        assert_eq!(
            json_of(&r),
            json!({"error": "generation out of range", "generation": 7, "max": 7 + (1u64 << 32)})
        );
        assert_eq!(p.held_generation().await, json!(7), "nothing changed");
    }
    // Later pushes go through, up to the step ahead.
    p.push_ok(&config(&b, 8)).await;
    p.push_ok(&config(&b, 8 + (1 << 32))).await;
    assert_eq!(p.pushes("invalid").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_only_move_forward() {
    let b = unique_bucket("gens");
    // A file config (generation 0) first; pushes replace it.
    let p = Push::start_with(true, Some(config(&b, 0))).await;
    p.env.wait_ready().await;
    let five = config(&b, 5);
    p.push_ok(&five).await;

    let r = p.push(&config(&b, 4)).await;
    assert_eq!(r.status, 409, "older generation: {}", r.text());
    assert_eq!(
        json_of(&r),
        json!({"error": "stale", "generation": 5, "hash": five.content_hash()})
    );
    let mut other = five.clone();
    other.region = "eu-west-1".into();
    let r = p.push(&other).await;
    assert_eq!(
        r.status,
        409,
        "same generation, other content: {}",
        r.text()
    );
    assert_eq!(json_of(&r)["generation"], json!(5));

    // The same push again (a retry) is a no-op that succeeds.
    let r = p.push(&five).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        json_of(&r),
        json!({"generation": 5, "hash": five.content_hash()})
    );
    assert_eq!(
        (
            p.pushes("applied").await,
            p.pushes("unchanged").await,
            p.pushes("stale").await
        ),
        (1, 1, 2)
    );
    // The region is still us-east-1: the SDK's signatures pass.
    put(&p.env.client(), &b, "k", b"v").await;
    p.push_ok(&config(&b, 6)).await;
    assert_eq!(p.held_generation().await, json!(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_gets_422_with_every_problem_and_the_old_one_stays() {
    let p = Push::start().await;
    let b = unique_bucket("invalid");
    let good = config(&b, 1);
    p.push_ok(&good).await;
    let mut bad = config(&b, 2);
    bad.region = "NOT A REGION".into();
    bad.credentials.push(credential(
        "AKIANEWPUSHKEY001",
        "new-secret-0001",
        &[(&b, Permission::Admin)],
    ));
    bad.credentials
        .push(credential("AKIANEWPUSHKEY001", "duplicate-0001", &[]));
    let r = p.push(&bad).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let body = json_of(&r);
    assert_eq!(body["error"], json!("invalid"));
    let problems: Vec<&str> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        problems.iter().any(|p| p.starts_with("region: "))
            && problems
                .iter()
                .any(|p| p.starts_with("credentials[2].accessKeyId: ")),
        "every problem with its field path: {problems:?}"
    );
    assert_eq!(
        p.held().await,
        json!({"generation": 1, "hash": good.content_hash()})
    );
    assert_eq!(p.pushes("invalid").await, 1);
    put(&p.env.client(), &b, "k", b"old config serves").await;
    let (status, code) = sdk_err(
        p.env
            .client_for("AKIANEWPUSHKEY001", "new-secret-0001")
            .list_objects_v2()
            .bucket(&b)
            .send()
            .await,
    );
    assert_eq!((status, code.as_str()), (403, "InvalidAccessKeyId"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_malformed_bodies_get_4xx() {
    let p = Push::start().await;
    let b = unique_bucket("malformed");
    let cfg = config(&b, 1);
    // Each request carries a token for its own body: what is malformed is the body.
    let put = |hash: Option<&str>, body: Vec<u8>| {
        let token = p.key.token_for("PUT", "/v1/config", &body);
        let mut req = RawRequest::new("PUT", "/v1/config")
            .header("authorization", &format!("Bearer {token}"))
            .body(body);
        if let Some(h) = hash {
            req = req.header(HASH, h);
        }
        req
    };
    let mut cut_off = serde_json::to_vec(&cfg).unwrap();
    cut_off.truncate(cut_off.len() / 2);
    let r = p
        .send(put(
            Some(&cfg.content_hash()),
            serde_json::to_vec(&config(&b, 1).buckets).unwrap(),
        ))
        .await;
    assert_eq!(r.status, 400, "a JSON array is not a config: {}", r.text());
    assert!(json_of(&r)["error"]
        .as_str()
        .unwrap()
        .starts_with("body is not a GatewayConfig"));
    let mut changed = cfg.clone();
    changed.region = "eu-west-1".into();
    let r = p
        .send(put(
            Some(&cfg.content_hash()),
            serde_json::to_vec(&changed).unwrap(),
        ))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(json_of(&r), json!({"error": "hash mismatch"}));
    let r = p.send(put(None, serde_json::to_vec(&cfg).unwrap())).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        json_of(&r),
        json!({"error": "missing X-Jets3-Config-Hash header"})
    );
    let r = p.send(put(Some(&cfg.content_hash()), cut_off)).await;
    assert_eq!(r.status, 400, "cut-off JSON: {}", r.text());
    let r = p
        .send(put(Some(&cfg.content_hash()), b"{\"buckets\": 7}".to_vec()))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());

    // Over 64 MiB: 413 (the client may not get to send it all).
    let token = format!("Bearer {}", p.key.token_for("PUT", "/v1/config", b""));
    let mut stream = p.tls_stream().await;
    let head = format!(
        "PUT /v1/config HTTP/1.1\r\nhost: {SERVER_NAME}\r\nauthorization: {token}\r\n{HASH}: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        cfg.content_hash(),
        (64 << 20) + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..65 {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        read_response(&mut rd, &mut buf, false, true),
    )
    .await
    .expect("413 within 60 s")
    .expect("response");
    writer.abort();
    assert_eq!(r.status, 413, "{}", r.text());

    // Other methods and paths, with a valid token for them.
    let bearer =
        |method: &str, path: &str| format!("Bearer {}", p.key.token_for(method, path, b""));
    let r = p
        .send(
            RawRequest::new("POST", "/v1/config")
                .header("authorization", &bearer("POST", "/v1/config")),
        )
        .await;
    assert_eq!(r.status, 405);
    let r = p
        .send(
            RawRequest::new("GET", "/v1/other")
                .header("authorization", &bearer("GET", "/v1/other")),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(p.pushes("malformed").await, 6);
    assert_eq!(p.held().await, json!({"generation": null, "hash": null}));
    let r = p.env.admin_get("/readyz").await;
    assert_eq!(r.status, 503, "still no config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_required_and_certificates_are_checked() {
    let p = Push::start().await;
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut tcp = TcpStream::connect(p.addr).await.unwrap();
    tcp.write_all(
        format!(
            "GET /v1/config HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\r\n",
            p.key.get_token()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got)).await;
    assert!(
        !got.starts_with(b"HTTP/"),
        "plain HTTP must not be answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    // A client that trusts another CA refuses the certificate.
    let stranger = Pki::new();
    let tcp = TcpStream::connect(p.addr).await.unwrap();
    let r = stranger
        .connector(None)
        .connect(ServerName::try_from(SERVER_NAME).unwrap(), tcp)
        .await;
    assert!(r.is_err(), "a certificate from an unknown CA is refused");
    // The certificate is for the Service name, not for anything else.
    let tcp = TcpStream::connect(p.addr).await.unwrap();
    let r = p
        .pki
        .as_ref()
        .unwrap()
        .connector(None)
        .connect(ServerName::try_from("other.test.svc").unwrap(), tcp)
        .await;
    assert!(r.is_err(), "the certificate names the push Service only");
    assert_eq!(p.held().await, json!({"generation": null, "hash": null}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_settings_that_are_not_safe_refuse_to_start() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::new();
    let verify = dir.path().join("verify.pem");
    std::fs::write(&verify, key.public_key_pem()).unwrap();
    let pki = Pki::new();
    let (cert, cert_key) = pki.serving(SERVER_NAME);
    std::fs::write(dir.path().join("tls.crt"), &cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), &cert_key).unwrap();
    std::fs::write(dir.path().join("other.key"), pki.serving(SERVER_NAME).1).unwrap();
    std::fs::write(dir.path().join("p384.pem"), {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
            .unwrap()
            .public_key_pem()
    })
    .unwrap();
    let base = PushSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls_cert_file: None,
        tls_key_file: None,
        insecure: false,
        verify_key_file: verify.clone(),
        audience: AUD.into(),
        issuer: ISS.into(),
    };
    let f = |name: &str| Some(dir.path().join(name));
    let cases = [
        ("no TLS and not insecure", base.clone(), "--push-insecure"),
        (
            "a certificate without its key",
            PushSettings {
                tls_cert_file: f("tls.crt"),
                ..base.clone()
            },
            "a certificate and a key",
        ),
        (
            "TLS and insecure",
            PushSettings {
                tls_cert_file: f("tls.crt"),
                tls_key_file: f("tls.key"),
                insecure: true,
                ..base.clone()
            },
            "exclude each other",
        ),
        (
            "a key that does not match the certificate",
            PushSettings {
                tls_cert_file: f("tls.crt"),
                tls_key_file: f("other.key"),
                ..base.clone()
            },
            "TLS certificate",
        ),
        (
            "a missing verify key",
            PushSettings {
                insecure: true,
                verify_key_file: dir.path().join("missing.pem"),
                ..base.clone()
            },
            "missing.pem",
        ),
        (
            "a P-384 verify key",
            PushSettings {
                insecure: true,
                verify_key_file: dir.path().join("p384.pem"),
                ..base.clone()
            },
            "P-256",
        ),
    ];
    for (what, push, expect) in cases {
        let mut settings = settings_for(&nats.url());
        settings.push = Some(push);
        match jets3_gateway::start(settings, None).await {
            Ok(_) => panic!("{what}: the gateway must refuse to start"),
            Err(e) => assert!(
                e.to_string().contains(expect),
                "{what}: error {e} should mention {expect:?}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_mode_serves_plain_http() {
    let p = Push::start_with(false, None).await;
    let b = unique_bucket("insecure");
    p.push_ok(&config(&b, 1)).await;
    p.env.wait_ready().await;
    assert_eq!(p.held_generation().await, json!(1));
    let r = p.send(RawRequest::new("GET", "/v1/config")).await;
    assert_eq!(r.status, 401, "tokens are checked without TLS too");
    // The auth scheme is case-insensitive (RFC 9110).
    let r = p
        .send(
            RawRequest::new("GET", "/v1/config")
                .header("authorization", &format!("bearer {}", p.key.get_token())),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let p = Push::start().await;
    let served = |s: &tokio_rustls::client::TlsStream<TcpStream>| -> CertificateDer<'static> {
        s.get_ref().1.peer_certificates().unwrap()[0].clone()
    };
    let before = served(&p.tls_stream().await);
    // An open connection outlives the rotation.
    let mut open = p.tls_stream().await;
    let pki = p.pki.as_ref().unwrap();
    let (cert, key) = pki.serving(SERVER_NAME);
    // A broken pair first: the old certificate stays in force.
    replace_file(&p.path("tls.crt"), &cert);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        served(&p.tls_stream().await),
        before,
        "mismatched pair ignored"
    );
    replace_file(&p.path("tls.key"), &key);
    let rotated = eventually(10, || async { served(&p.tls_stream().await) != before }).await;
    assert!(rotated, "new connections get the new certificate");
    let expected = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    assert_eq!(served(&p.tls_stream().await), expected);
    let req = RawRequest::new("GET", "/v1/config")
        .header("authorization", &format!("Bearer {}", p.key.get_token()))
        .to_bytes(SERVER_NAME);
    open.write_all(&req).await.unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut open, &mut buf, false, true)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "the connection opened before still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_verify_key_is_used_without_a_restart() {
    let p = Push::start().await;
    let b = unique_bucket("rotate");
    p.push_ok(&config(&b, 1)).await;
    let next = SigningKey::new();
    // The chart hands the key over as a certificate that carries it.
    replace_file(&p.path("verify.pem"), &next.certificate_pem());
    let rotated = eventually(10, || async {
        p.put_with(&next.put_token(&config(&b, 2)), &config(&b, 2))
            .await
            .status
            == 200
    })
    .await;
    assert!(rotated, "tokens of the new key are accepted");
    let r = p
        .put_with(&p.key.put_token(&config(&b, 3)), &config(&b, 3))
        .await;
    assert_eq!(r.status, 401, "tokens of the old key are not");
    // A broken file leaves the key in force.
    replace_file(&p.path("verify.pem"), "-----BEGIN PUBLIC KEY-----\nAAAA\n");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = p
        .put_with(&next.put_token(&config(&b, 3)), &config(&b, 3))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_get_finishes_across_a_config_swap() {
    let p = Push::start().await;
    let b = unique_bucket("inflight");
    p.push_ok(&config(&b, 1)).await;
    p.env.wait_ready().await;
    let body = data(24 * MIB, 7);
    put(&p.env.client(), &b, "big", &body).await;

    // Start a GET and read only its first bytes: the gateway blocks on a full socket.
    let mut req = RawRequest::new("GET", &format!("/{b}/big"));
    sign_request(&mut req, &p.env.host(), &Signer::admin(), Payload::Signed);
    let mut stream = TcpStream::connect(p.env.addr).await.unwrap();
    stream
        .write_all(&req.to_bytes(&p.env.host()))
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = stream.read(&mut buf).await.unwrap();
    buf.truncate(n);
    assert!(buf.starts_with(b"HTTP/1.1 200"), "GET started");

    // Swap in a config without the admin key, while the GET is running.
    let mut next = config(&b, 2);
    next.credentials = vec![credential(
        "AKIAOTHERPUSHKEY1",
        "other-secret-0001",
        &[(&b, Permission::Read)],
    )];
    p.push_ok(&next).await;
    let (status, code) = sdk_err(p.env.client().list_objects_v2().bucket(&b).send().await);
    assert_eq!(
        (status, code.as_str()),
        (403, "InvalidAccessKeyId"),
        "new requests see the new config"
    );

    let r = tokio::time::timeout(
        Duration::from_secs(60),
        read_response(&mut stream, &mut buf, false, true),
    )
    .await
    .expect("GET finishes")
    .expect("full response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    assert_eq!(md5_hex(&r.body), md5_hex(&body), "every byte, unchanged");
}
