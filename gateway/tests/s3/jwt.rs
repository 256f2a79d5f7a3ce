//! JWT bearer authentication per bucket: every algorithm with keys made here, static keys
//! and a JWKS served by a small HTTP server on 127.0.0.1, each kind of bad token, JWKS
//! rotation with a bounded refresh rate, and JWT next to SigV4 and public-read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jets3_crds::{
    Access, ClaimOp, ClaimRule, JwtAlgorithm, JwtAuth, JwtKey, Permission, TokenSource,
    TokenSourceKind,
};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::*;

// ---------------------------------------------------------------------------------------
// keys and tokens, made here with ring (and rsa for RSA key generation)
// ---------------------------------------------------------------------------------------

type SignFn = Box<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// An RSA key: PKCS#8 DER, public key PEM, modulus, exponent.
struct RsaMaterial {
    der: Vec<u8>,
    pem: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

/// A signing key with the public forms the gateway reads.
pub(crate) struct TestKey {
    alg: &'static str,
    kid: String,
    sign: SignFn,
    /// Public key PEM (asymmetric keys).
    pem: Option<String>,
    /// The JWK (asymmetric keys).
    jwk: Option<Value>,
    /// The secret (HMAC keys).
    secret: Option<Vec<u8>>,
}

fn b64u(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

pub(crate) fn hmac_key(alg: &'static str, kid: &str) -> TestKey {
    let secret: Vec<u8> = data(48, kid.len() as u64 * 7 + 3);
    let algo = match alg {
        "HS256" => ring::hmac::HMAC_SHA256,
        "HS384" => ring::hmac::HMAC_SHA384,
        _ => ring::hmac::HMAC_SHA512,
    };
    let key = ring::hmac::Key::new(algo, &secret);
    TestKey {
        alg,
        kid: kid.into(),
        sign: Box::new(move |m| ring::hmac::sign(&key, m).as_ref().to_vec()),
        pem: None,
        jwk: None,
        secret: Some(secret),
    }
}

/// One RSA key per test binary (generation is slow).
fn rsa_pkcs8() -> &'static RsaMaterial {
    static KEY: OnceLock<RsaMaterial> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa keygen");
        let der = key.to_pkcs8_der().expect("pkcs8").as_bytes().to_vec();
        let public = key.to_public_key();
        let pem = public.to_public_key_pem(LineEnding::LF).expect("pem");
        RsaMaterial {
            der,
            pem,
            n: public.n().to_bytes_be(),
            e: public.e().to_bytes_be(),
        }
    })
}

fn rsa_key(alg: &'static str, kid: &str) -> TestKey {
    let RsaMaterial { der, pem, n, e } = rsa_pkcs8();
    let pair = RsaKeyPair::from_pkcs8(der).expect("rsa pkcs8");
    let padding: &'static dyn sig::RsaEncoding = match alg {
        "RS256" => &sig::RSA_PKCS1_SHA256,
        "RS384" => &sig::RSA_PKCS1_SHA384,
        "RS512" => &sig::RSA_PKCS1_SHA512,
        "PS256" => &sig::RSA_PSS_SHA256,
        "PS384" => &sig::RSA_PSS_SHA384,
        _ => &sig::RSA_PSS_SHA512,
    };
    TestKey {
        alg,
        kid: kid.into(),
        sign: Box::new(move |m| {
            let mut out = vec![0; pair.public().modulus_len()];
            pair.sign(padding, &SystemRandom::new(), m, &mut out)
                .expect("rsa sign");
            out
        }),
        pem: Some(pem.clone()),
        jwk: Some(
            json!({"kty": "RSA", "kid": kid, "alg": alg, "use": "sig", "n": b64u(n), "e": b64u(e)}),
        ),
        secret: None,
    }
}

fn ec_key(alg: &'static str, kid: &str) -> TestKey {
    let rng = SystemRandom::new();
    let (signing, spki_prefix, crv, half) = match alg {
        "ES256" => (
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            "3059301306072a8648ce3d020106082a8648ce3d030107034200",
            "P-256",
            32,
        ),
        _ => (
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            "3076301006072a8648ce3d020106052b81040022036200",
            "P-384",
            48,
        ),
    };
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).expect("ec keygen");
    let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).expect("ec pkcs8");
    let point = pair.public_key().as_ref().to_vec();
    let mut spki = hex::decode(spki_prefix).unwrap();
    spki.extend_from_slice(&point);
    TestKey {
        alg,
        kid: kid.into(),
        sign: Box::new(move |m| {
            pair.sign(&SystemRandom::new(), m)
                .expect("ec sign")
                .as_ref()
                .to_vec()
        }),
        pem: Some(pem("PUBLIC KEY", &spki)),
        jwk: Some(json!({
            "kty": "EC", "kid": kid, "crv": crv,
            "x": b64u(&point[1..1 + half]), "y": b64u(&point[1 + half..]),
        })),
        secret: None,
    }
}

fn ed_key(kid: &str) -> TestKey {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("ed keygen");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ed pkcs8");
    let raw = pair.public_key().as_ref().to_vec();
    let mut spki = hex::decode("302a300506032b6570032100").unwrap();
    spki.extend_from_slice(&raw);
    TestKey {
        alg: "EdDSA",
        kid: kid.into(),
        sign: Box::new(move |m| pair.sign(m).as_ref().to_vec()),
        pem: Some(pem("PUBLIC KEY", &spki)),
        jwk: Some(json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64u(&raw)})),
        secret: None,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Standard claims valid for five minutes.
pub(crate) fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISSUER, "aud": "jets3", "exp": now() + 300, "iat": now()})
}

fn sign_with(k: &TestKey, header: Value, claims: &Value) -> String {
    let msg = format!(
        "{}.{}",
        b64u(header.to_string().as_bytes()),
        b64u(claims.to_string().as_bytes())
    );
    let s = (k.sign)(msg.as_bytes());
    format!("{msg}.{}", b64u(&s))
}

pub(crate) fn token(k: &TestKey, claims: &Value) -> String {
    sign_with(k, json!({"alg": k.alg, "typ": "JWT", "kid": k.kid}), claims)
}

pub(crate) fn static_key(k: &TestKey) -> JwtKey {
    JwtKey {
        kid: Some(k.kid.clone()),
        algorithm: serde_json::from_value(json!(k.alg)).unwrap(),
        secret: None,
        secret_base64: k.secret.as_ref().map(|s| STANDARD.encode(s)),
        public_key_pem: k.pem.clone(),
    }
}

const ISSUER: &str = "https://idp.test/realms/apps";

// ---------------------------------------------------------------------------------------
// a JWKS server
// ---------------------------------------------------------------------------------------

/// Serves one JSON document on every path; counts requests.
struct JwksServer {
    url: String,
    doc: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(keys: &[&TestKey]) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/realms/apps/certs",
            listener.local_addr().unwrap()
        );
        let doc = Arc::new(Mutex::new(String::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (d, h) = (doc.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (d, h) = (d.clone(), h.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 1024];
                    while find(&buf, b"\r\n\r\n").is_none() {
                        match conn.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let body = d.lock().unwrap().clone();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                });
            }
        });
        let s = JwksServer {
            url,
            doc,
            hits,
            task,
        };
        s.set(keys);
        s
    }

    fn set(&self, keys: &[&TestKey]) {
        let jwks: Vec<Value> = keys.iter().filter_map(|k| k.jwk.clone()).collect();
        *self.doc.lock().unwrap() = json!({ "keys": jwks }).to_string();
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

pub(crate) fn jwt_cfg(keys: Vec<JwtKey>, jwks: Option<&str>) -> JwtAuth {
    JwtAuth {
        issuer: Some(ISSUER.into()),
        audiences: vec!["jets3".into()],
        keys,
        jwks_url: jwks.map(str::to_string),
        jwks_min_refresh_seconds: 2,
        ..Default::default()
    }
}

async fn get_with(env: &Env, path: &str, bearer: &str) -> RawResponse {
    env.send(RawRequest::new("GET", path).header("authorization", &format!("Bearer {bearer}")))
        .await
}

/// Asserts the refusal every bad token gets: 403 AccessDenied with no detail.
#[track_caller]
fn assert_denied(r: &RawResponse, what: &str) {
    assert_eq!(
        (r.status, r.code().as_deref()),
        (403, Some("AccessDenied")),
        "{what}: {}",
        r.text()
    );
    r.assert_error(403, "AccessDenied");
    assert_eq!(
        xml_tag(&r.text(), "Message").as_deref(),
        Some("Access Denied"),
        "{what}: the message gives no hint"
    );
}

// ---------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_with_static_keys_and_jwks() {
    let hs: Vec<TestKey> = ["HS256", "HS384", "HS512"]
        .into_iter()
        .map(|a| hmac_key(a, &format!("{a}-static")))
        .collect();
    // Static PEM keys for some, JWKS for all asymmetric algorithms.
    let pem_keys = [
        rsa_key("RS256", "rs256-pem"),
        ec_key("ES256", "es256-pem"),
        ed_key("ed-pem"),
    ];
    let jwks_keys = vec![
        rsa_key("RS256", "rs256"),
        rsa_key("RS384", "rs384"),
        rsa_key("RS512", "rs512"),
        rsa_key("PS256", "ps256"),
        rsa_key("PS384", "ps384"),
        rsa_key("PS512", "ps512"),
        ec_key("ES256", "es256"),
        ec_key("ES384", "es384"),
        ed_key("eddsa"),
    ];
    let server = JwksServer::start(&jwks_keys.iter().collect::<Vec<_>>()).await;
    let b = unique_bucket("jwt-algs");
    let mut cfg = config_with(&[&b]);
    let keys = hs.iter().chain(pem_keys.iter()).map(static_key).collect();
    cfg.buckets[0].jwt = Some(jwt_cfg(keys, Some(&server.url)));
    let env = Env::start(cfg).await;
    put(&env.client(), &b, "doc.txt", b"token reader").await;

    for k in hs.iter().chain(pem_keys.iter()).chain(jwks_keys.iter()) {
        let r = get_with(&env, &format!("/{b}/doc.txt"), &token(k, &claims("alice"))).await;
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"token reader"[..]),
            "{} ({}): {}",
            k.alg,
            k.kid,
            r.text()
        );
    }
    // A token without kid tries every key of its algorithm.
    let no_kid = sign_with(&hs[1], json!({"alg": "HS384"}), &claims("bob"));
    get_with(&env, &format!("/{b}/doc.txt"), &no_kid)
        .await
        .assert_status(200);
    let r = get_with(
        &env,
        &format!("/{b}?list-type=2"),
        &token(&hs[0], &claims("a")),
    )
    .await;
    r.assert_status(200);
    assert_eq!(xml_tag(&r.text(), "Key").as_deref(), Some("doc.txt"));
    // The default permission is read: writes are refused.
    let r = env
        .send(
            RawRequest::new("PUT", &format!("/{b}/new"))
                .header(
                    "authorization",
                    &format!("Bearer {}", token(&hs[0], &claims("a"))),
                )
                .body("x"),
        )
        .await;
    assert_denied(&r, "PUT with a read-only token");
    // One JWKS fetch served every JWKS key.
    assert_eq!(server.hits(), 1, "the JWKS is fetched once and cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_without_a_hint() {
    let good = ec_key("ES256", "k1");
    let other = ec_key("ES256", "k1");
    let hs = hmac_key("HS256", "h1");
    let rs = rsa_key("RS256", "r1");
    let server = JwksServer::start(&[&good]).await;
    let b = unique_bucket("jwt-bad");
    let mut cfg = config_with(&[&b]);
    let mut jwt = jwt_cfg(vec![static_key(&hs), static_key(&rs)], Some(&server.url));
    jwt.jwks_min_refresh_seconds = 60;
    jwt.claims = vec![ClaimRule {
        claim: "realm.roles".into(),
        op: ClaimOp::Contains,
        value: json!("s3-reader"),
    }];
    cfg.buckets[0].jwt = Some(jwt);
    let env = Env::start(cfg).await;
    put(&env.client(), &b, "k", b"secret").await;
    let path = format!("/{b}/k");
    let with_role = |mut c: Value| {
        c["realm"] = json!({"roles": ["s3-reader"]});
        c
    };
    get_with(&env, &path, &token(&good, &with_role(claims("ok"))))
        .await
        .assert_status(200);
    let hits = server.hits();

    let mut cases: Vec<(&str, String)> = Vec::new();
    let t = token(&good, &with_role(claims("x")));
    let (head, rest) = t.rsplit_once('.').unwrap();
    let mut sig_bytes = URL_SAFE_NO_PAD.decode(rest).unwrap();
    sig_bytes[5] ^= 1;
    cases.push(("bad signature", format!("{head}.{}", b64u(&sig_bytes))));
    cases.push((
        "signed by another key with the same kid",
        token(&other, &with_role(claims("x"))),
    ));
    let mut c = with_role(claims("x"));
    c["exp"] = json!(now() - 120);
    cases.push(("expired beyond the leeway", token(&good, &c)));
    let mut c = with_role(claims("x"));
    c["nbf"] = json!(now() + 120);
    cases.push(("not valid yet", token(&good, &c)));
    let mut c = with_role(claims("x"));
    c["aud"] = json!("someone-else");
    cases.push(("wrong audience", token(&good, &c)));
    let mut c = with_role(claims("x"));
    c["iss"] = json!("https://evil.test");
    cases.push(("wrong issuer", token(&good, &c)));
    let mut c = with_role(claims("x"));
    c.as_object_mut().unwrap().remove("exp");
    cases.push(("no exp", token(&good, &c)));
    cases.push(("claim rule not met", token(&good, &claims("x"))));
    let mut c = claims("x");
    c["realm"] = json!({"roles": "s3-reader-not"});
    cases.push(("claim rule on a string", token(&good, &c)));
    cases.push((
        "unknown kid",
        sign_with(
            &good,
            json!({"alg": "ES256", "kid": "nobody"}),
            &with_role(claims("x")),
        ),
    ));
    // HS256 with the RSA public key as the secret: the classic algorithm confusion.
    let pem_secret = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        rs.pem.as_deref().unwrap().as_bytes(),
    );
    let confused = TestKey {
        alg: "HS256",
        kid: "r1".into(),
        sign: Box::new(move |m| ring::hmac::sign(&pem_secret, m).as_ref().to_vec()),
        pem: None,
        jwk: None,
        secret: None,
    };
    cases.push((
        "HS256 signed with the RSA public key",
        token(&confused, &with_role(claims("x"))),
    ));
    let none_header = b64u(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64u(with_role(claims("x")).to_string().as_bytes());
    cases.push(("alg none", format!("{none_header}.{body}.")));
    cases.push(("garbage", "not-a-jwt".into()));
    for (what, tok) in &cases {
        assert_denied(&get_with(&env, &path, tok).await, what);
    }
    // Unknown kids cause at most one JWKS fetch per jwksMinRefreshSeconds.
    assert!(
        server.hits() <= hits + 1,
        "fetches after {} bad tokens: {} (before: {hits})",
        cases.len(),
        server.hits()
    );
    // A bad token is never read as anonymous, even where anonymous may read.
    let mut cfg = env.config.clone();
    cfg.generation = 2;
    cfg.buckets[0].access = Access::PublicRead;
    env.gw().set_config(cfg).expect("valid");
    env.send(RawRequest::new("GET", &path))
        .await
        .assert_status(200);
    assert_denied(
        &get_with(&env, &path, "not-a-jwt").await,
        "a bad token on a public-read bucket",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_rotation_refreshes_on_an_unknown_kid_at_a_bounded_rate() {
    let a = ec_key("ES256", "2026-a");
    let bkey = rsa_key("RS256", "2026-b");
    let server = JwksServer::start(&[&a]).await;
    let bucket = unique_bucket("jwt-rotate");
    let mut cfg = config_with(&[&bucket]);
    cfg.buckets[0].jwt = Some(jwt_cfg(vec![], Some(&server.url)));
    let env = Env::start(cfg).await;
    put(&env.client(), &bucket, "k", b"rotated").await;
    let path = format!("/{bucket}/k");
    get_with(&env, &path, &token(&a, &claims("u")))
        .await
        .assert_status(200);
    let before = server.hits();
    assert!(before >= 1);

    // The issuer rotates: key b replaces key a.
    server.set(&[&bkey]);
    // Past the 2 s minimum refresh interval since the warm-up fetch.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = get_with(&env, &path, &token(&bkey, &claims("u"))).await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"rotated"[..]),
        "{}",
        r.text()
    );
    assert_eq!(server.hits(), before + 1, "one fetch for the new kid");
    // Key a is gone from the refreshed set; asking for it again within the minimum
    // interval does not fetch again.
    for _ in 0..10 {
        assert_denied(
            &get_with(&env, &path, &token(&a, &claims("u"))).await,
            "a token of the removed key",
        );
    }
    assert_eq!(server.hits(), before + 1, "no fetch storm on unknown kids");
    get_with(&env, &path, &token(&bkey, &claims("u")))
        .await
        .assert_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_next_to_sigv4_and_public_read() {
    let k = ed_key("writer");
    let b = unique_bucket("jwt-mixed");
    let ro = unique_bucket("jwt-ro");
    let mut cfg = config_with(&[&b, &ro]);
    let mut jwt = jwt_cfg(vec![static_key(&k)], None);
    jwt.sources = vec![
        TokenSource {
            kind: TokenSourceKind::Bearer,
            name: None,
        },
        TokenSource {
            kind: TokenSourceKind::Query,
            name: Some("access_token".into()),
        },
        TokenSource {
            kind: TokenSourceKind::Header,
            name: Some("x-auth-token".into()),
        },
    ];
    jwt.permission = Permission::ReadWrite;
    jwt.algorithms = vec![JwtAlgorithm::EdDSA];
    jwt.claims = vec![
        ClaimRule {
            claim: "tier".into(),
            op: ClaimOp::In,
            value: json!(["gold", "silver"]),
        },
        ClaimRule {
            claim: "quota.gb".into(),
            op: ClaimOp::Gt,
            value: json!(10),
        },
        ClaimRule {
            claim: "quota.gb".into(),
            op: ClaimOp::Lt,
            value: json!(1000),
        },
        ClaimRule {
            claim: "team".into(),
            op: ClaimOp::Equals,
            value: json!("media"),
        },
    ];
    cfg.buckets[0].access = Access::PublicRead;
    cfg.buckets[0].jwt = Some(jwt.clone());
    cfg.buckets[1].jwt = Some(jwt);
    cfg.buckets[1].read_only = true;
    let env = Env::start(cfg).await;
    let mut c = claims("svc-uploader");
    c["tier"] = json!("gold");
    c["quota"] = json!({"gb": 50});
    c["team"] = json!("media");
    let tok = token(&k, &c);

    // Write through each token source.
    for (how, req) in [
        (
            "bearer",
            RawRequest::new("PUT", &format!("/{b}/bearer"))
                .header("authorization", &format!("Bearer {tok}")),
        ),
        (
            "query",
            RawRequest::new("PUT", &format!("/{b}/query?access_token={tok}")),
        ),
        (
            "header",
            RawRequest::new("PUT", &format!("/{b}/header")).header("x-auth-token", &tok),
        ),
    ] {
        let r = env.send(req.body(format!("via {how}"))).await;
        assert_eq!(
            r.status,
            200,
            "PUT with the token in the {how}: {}",
            r.text()
        );
    }
    // SigV4 and anonymous reads see them.
    assert_eq!(get_bytes(&env.client(), &b, "query").await, b"via query");
    let r = env
        .send(RawRequest::new("GET", &format!("/{b}/header")))
        .await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"via header"[..]));
    // A claim rule that fails denies, whatever the source.
    let mut low = c.clone();
    low["quota"] = json!({"gb": 5});
    let r = env
        .send(
            RawRequest::new("PUT", &format!("/{b}/low"))
                .header("x-auth-token", &token(&k, &low))
                .body("x"),
        )
        .await;
    assert_denied(&r, "gt rule not met");
    // A read-only bucket refuses writes even with a read-write token.
    let r = env
        .send(
            RawRequest::new("PUT", &format!("/{ro}/x"))
                .header("authorization", &format!("Bearer {tok}"))
                .body("x"),
        )
        .await;
    r.assert_error(403, "AccessDenied");
    get_with(&env, &format!("/{ro}?list-type=2"), &tok)
        .await
        .assert_status(200);
    // The token of one bucket is nothing on a bucket without JWT.
    let plain = unique_bucket("jwt-none");
    let r = get_with(&env, &format!("/{plain}/x"), &tok).await;
    assert!(
        r.status == 400 || r.status == 403,
        "a Bearer token where JWT is not configured: {} {}",
        r.status,
        r.text()
    );
    // Nothing was written by the refused requests.
    let keys = list_all_keys(&env.client(), &b).await;
    assert_eq!(keys, vec!["bearer", "header", "query"]);
}
