//! PostObject end to end: a real nats-server, the gateway in-process, and browser-style
//! multipart/form-data POSTs with SigV4 POST policies sent over a raw TCP connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jets3_crds::{Access, BucketConfig, Credential, GatewayConfig, Grant, Permission, StorageKind};
use jets3_gateway::{GatewayHandle, NatsSettings, ServerSettings};
use jets3_testkit::sigv4::{amz_date, hmac, signing_key};
use jets3_testkit::{unique, NatsServer};
use serde_json::{json, Value};
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REGION: &str = "us-east-1";
const WRITER_AK: &str = "AKIAPOSTWRITER000001";
const WRITER_SK: &str = "post-writer-secret/0001";
const READER_AK: &str = "AKIAPOSTREADER000001";
const READER_SK: &str = "post-reader-secret/0001";

// ---------------------------------------------------------------------------------------
// nats-server and gateway
// ---------------------------------------------------------------------------------------

struct Env {
    gw: Option<GatewayHandle>,
    addr: SocketAddr,
    bucket: String,
    nats: NatsServer,
}

fn credential(ak: &str, sk: &str, grants: &[(&str, Permission)]) -> Credential {
    Credential {
        access_key_id: ak.into(),
        secret_access_key: sk.into(),
        grants: grants
            .iter()
            .map(|(b, p)| Grant {
                bucket: (*b).into(),
                permission: *p,
            })
            .collect(),
        not_before: None,
        not_after: None,
        description: None,
    }
}

impl Env {
    /// A gateway with one bucket (public-read, so tests can read back anonymously), a
    /// writer key and a read-only key.
    async fn start(bucket: &str) -> Env {
        let nats = NatsServer::start().await;
        let config = GatewayConfig {
            buckets: vec![BucketConfig {
                name: bucket.into(),
                nats_bucket: None,
                access: Access::PublicRead,
                read_only: false,
                create: true,
                storage: StorageKind::File,
                replicas: 1,
                cors: vec![],
                ..Default::default()
            }],
            credentials: vec![
                credential(WRITER_AK, WRITER_SK, &[(bucket, Permission::ReadWrite)]),
                credential(READER_AK, READER_SK, &[(bucket, Permission::Read)]),
            ],
            ..Default::default()
        };
        let settings = ServerSettings {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            admin_listen: None,
            nats: NatsSettings {
                servers: vec![nats.url()],
                ..Default::default()
            },
            shutdown_grace_seconds: 1,
            ..Default::default()
        };
        let gw = jets3_gateway::start(settings, Some(config))
            .await
            .unwrap_or_else(|e| panic!("gateway start failed: {e:?}"));
        let env = Env {
            addr: gw.s3_addr(),
            gw: Some(gw),
            bucket: bucket.into(),
            nats,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while env
            .store()
            .bucket_info(bucket)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            assert!(Instant::now() < deadline, "bucket {bucket} was not created");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        env
    }

    fn store(&self) -> jets3_gateway::store::Store {
        self.gw.as_ref().expect("running").gateway().store.clone()
    }

    async fn head(&self, key: &str) -> Option<jets3_gateway::store::ObjectMeta> {
        self.store()
            .bucket(&self.bucket)
            .head(key)
            .await
            .expect("head")
    }

    /// Messages in the bucket's stream (chunks and metadata).
    async fn stream_messages(&self) -> u64 {
        let client = async_nats::connect(self.nats.url()).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let mut stream = js
            .get_stream(format!("OBJ_{}", self.bucket))
            .await
            .expect("stream");
        stream.info().await.expect("info").state.messages
    }

    /// Waits until the bucket's stream is empty (purges run in the background).
    async fn assert_stream_empties(&self) {
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let n = self.stream_messages().await;
            if n == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the bucket's stream still holds {n} messages"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    async fn post(&self, content_type: &str, body: Vec<u8>) -> Resp {
        let head = format!(
            "POST /{} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.bucket,
            self.host(),
            body.len()
        );
        let mut raw = head.into_bytes();
        raw.extend_from_slice(&body);
        self.send(&raw).await
    }

    async fn post_form(&self, form: &Form) -> Resp {
        let (ct, body) = form.encode();
        self.post(&ct, body).await
    }

    async fn get(&self, key: &str) -> Resp {
        let raw = format!(
            "GET /{}/{key} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.bucket,
            self.host()
        );
        self.send(raw.as_bytes()).await
    }

    async fn send(&self, raw: &[u8]) -> Resp {
        let mut conn = TcpStream::connect(self.addr).await.expect("connect");
        // The gateway may answer (and close) before reading everything.
        let _ = conn.write_all(raw).await;
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut out))
            .await
            .expect("response in time")
            .expect("read response");
        Resp::parse(&out)
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn parse(raw: &[u8]) -> Resp {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
        let head = std::str::from_utf8(&raw[..split]).expect("utf8 head");
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let rest = &raw[split + 4..];
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_vec()
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The text of an XML element of the body.
    fn elem(&self, name: &str) -> Option<String> {
        let text = self.text();
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(
            text[start..end]
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
    }

    fn error_code(&self) -> String {
        self.elem("Code")
            .unwrap_or_else(|| panic!("no error code in {}: {}", self.status, self.text()))
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = std::str::from_utf8(&data[..eol]).expect("chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

// ---------------------------------------------------------------------------------------
// forms and policies
// ---------------------------------------------------------------------------------------

struct Form {
    fields: Vec<(String, String)>,
    file_name: Option<String>,
    file_type: Option<String>,
    file: Vec<u8>,
    after: Vec<(String, String)>,
}

impl Form {
    fn encode(&self) -> (String, Vec<u8>) {
        let boundary = "----jets3FormBoundary7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        let text_part = |body: &mut Vec<u8>, name: &str, value: &str| {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        };
        for (n, v) in &self.fields {
            text_part(&mut body, n, v);
        }
        let mut disposition = "form-data; name=\"file\"".to_string();
        if let Some(f) = &self.file_name {
            disposition.push_str(&format!("; filename=\"{f}\""));
        }
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: {disposition}\r\n").as_bytes(),
        );
        if let Some(t) = &self.file_type {
            body.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&self.file);
        body.extend_from_slice(b"\r\n");
        for (n, v) in &self.after {
            text_part(&mut body, n, v);
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// How to build a signed form.
struct Policy<'a> {
    ak: &'a str,
    sk: &'a str,
    bucket: &'a str,
    /// Form fields before the signature fields (key first), each with its own `eq`
    /// condition unless listed in `conditions` instead.
    fields: Vec<(&'a str, &'a str)>,
    /// Conditions besides bucket, the signature fields and the `eq` of every field.
    conditions: Vec<Value>,
    /// Fields that get no automatic `eq` condition (covered by `conditions`).
    loose: Vec<&'a str>,
    expires_in: time::Duration,
}

impl<'a> Policy<'a> {
    fn new(bucket: &'a str, key: &'a str) -> Self {
        Policy {
            ak: WRITER_AK,
            sk: WRITER_SK,
            bucket,
            fields: vec![("key", key)],
            conditions: Vec::new(),
            loose: Vec::new(),
            expires_in: time::Duration::hours(1),
        }
    }

    fn field(mut self, name: &'a str, value: &'a str) -> Self {
        self.fields.push((name, value));
        self
    }

    fn condition(mut self, c: Value) -> Self {
        self.conditions.push(c);
        self
    }

    fn loose(mut self, name: &'a str) -> Self {
        self.loose.push(name);
        self
    }

    /// The form fields: the given ones, then the signature fields, policy and signature.
    fn sign(&self) -> Vec<(String, String)> {
        let now = OffsetDateTime::now_utc();
        let date = amz_date(now);
        let day = &date[..8];
        let credential = format!("{}/{day}/{REGION}/s3/aws4_request", self.ak);
        let mut conditions = vec![
            json!({ "bucket": self.bucket }),
            json!({ "x-amz-algorithm": "AWS4-HMAC-SHA256" }),
            json!({ "x-amz-credential": credential }),
            json!({ "x-amz-date": date }),
        ];
        for (n, v) in &self.fields {
            if !self.loose.contains(n) {
                conditions.push(json!(["eq", format!("${n}"), v]));
            }
        }
        conditions.extend(self.conditions.iter().cloned());
        let doc = json!({
            "expiration": rfc3339(now + self.expires_in),
            "conditions": conditions,
        });
        let policy = base64::engine::general_purpose::STANDARD.encode(doc.to_string());
        let k_signing = signing_key(self.sk, day, REGION, "s3");
        let signature = hex::encode(hmac(&k_signing, policy.as_bytes()));
        let mut fields: Vec<(String, String)> = self
            .fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        fields.push(("X-Amz-Algorithm".into(), "AWS4-HMAC-SHA256".into()));
        fields.push(("X-Amz-Credential".into(), credential));
        fields.push(("X-Amz-Date".into(), date));
        fields.push(("Policy".into(), policy));
        fields.push(("X-Amz-Signature".into(), signature));
        fields
    }

    fn form(&self, file_name: Option<&str>, file_type: Option<&str>, file: &[u8]) -> Form {
        Form {
            fields: self.sign(),
            file_name: file_name.map(str::to_string),
            file_type: file_type.map(str::to_string),
            file: file.to_vec(),
            after: Vec::new(),
        }
    }
}

fn md5_hex(data: &[u8]) -> String {
    use md5_reference::Digest;
    hex::encode(md5_reference::Md5::digest(data))
}

// ---------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn default_204_stores_content_and_metadata() {
    let env = Env::start(&unique("post204")).await;
    let b = env.bucket.clone();
    let content = b"hello from a browser form\n".to_vec();
    let policy = Policy::new(&b, "uploads/note.txt")
        .field("Content-Type", "text/plain")
        .field("Cache-Control", "max-age=60")
        .field("Content-Disposition", "attachment; filename=\"note.txt\"")
        .field("x-amz-meta-color", "blue")
        .field("X-Amz-Meta-Owner", "alice")
        .loose("key")
        .loose("Content-Type")
        .condition(json!(["starts-with", "$key", "uploads/"]))
        .condition(json!(["starts-with", "$Content-Type", "text/"]))
        .condition(json!(["content-length-range", 1, 1024]));
    let mut form = policy.form(Some("note.txt"), Some("application/octet-stream"), &content);
    // Fields after the file are ignored (and need no condition).
    form.after.push(("x-amz-meta-ignored".into(), "yes".into()));
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    assert!(resp.body.is_empty());
    let etag = format!("\"{}\"", md5_hex(&content));
    assert_eq!(resp.header("etag"), Some(etag.as_str()));
    assert_eq!(
        resp.header("location").map(str::to_string),
        Some(format!("http://{}/{b}/uploads%2Fnote.txt", env.host()))
    );

    let got = env.get("uploads/note.txt").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.body, content);
    assert_eq!(got.header("etag"), Some(etag.as_str()));
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert_eq!(got.header("cache-control"), Some("max-age=60"));
    assert_eq!(
        got.header("content-disposition"),
        Some("attachment; filename=\"note.txt\"")
    );
    assert_eq!(got.header("x-amz-meta-color"), Some("blue"));
    assert_eq!(got.header("x-amz-meta-owner"), Some("alice"));
    assert_eq!(got.header("x-amz-meta-ignored"), None);
}

#[tokio::test]
async fn status_201_200_and_redirect() {
    let env = Env::start(&unique("poststatus")).await;
    let b = env.bucket.clone();

    // 201: a PostResponse document.
    let content = b"created".to_vec();
    let form = Policy::new(&b, "a/created.bin")
        .field("success_action_status", "201")
        .form(Some("x.bin"), None, &content);
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let etag = format!("\"{}\"", md5_hex(&content));
    let location = format!("http://{}/{b}/a%2Fcreated.bin", env.host());
    assert_eq!(resp.header("etag"), Some(etag.as_str()));
    assert_eq!(resp.header("location"), Some(location.as_str()));
    assert_eq!(resp.header("content-type"), Some("application/xml"));
    assert_eq!(
        resp.text(),
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{location}</Location><Bucket>{b}</Bucket><Key>a/created.bin</Key><ETag>&quot;{}&quot;</ETag></PostResponse>",
            md5_hex(&content)
        )
    );
    // No content type anywhere: binary/octet-stream.
    let got = env.get("a/created.bin").await;
    assert_eq!(got.body, content);
    assert_eq!(got.header("content-type"), Some("binary/octet-stream"));

    // 200: empty.
    let content = b"two hundred".to_vec();
    let form = Policy::new(&b, "ok.txt")
        .field("success_action_status", "200")
        .form(Some("ok.txt"), Some("text/markdown"), &content);
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.body.is_empty());
    assert_eq!(
        resp.header("etag").map(str::to_string),
        Some(format!("\"{}\"", md5_hex(&content)))
    );
    let got = env.get("ok.txt").await;
    assert_eq!(got.body, content);
    // The file part's type is the default Content-Type.
    assert_eq!(got.header("content-type"), Some("text/markdown"));

    // Redirect: 303 to the URL with bucket, key and etag.
    let content = b"redirected".to_vec();
    let form = Policy::new(&b, "dir/r e+d.txt")
        .field(
            "success_action_redirect",
            "https://app.example.com/done?x=1",
        )
        .field("success_action_status", "201")
        .form(Some("r.txt"), None, &content);
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 303, "{}", resp.text());
    assert_eq!(
        resp.header("location").map(str::to_string),
        Some(format!(
            "https://app.example.com/done?x=1&bucket={b}&key=dir%2Fr%20e%2Bd.txt&etag=%22{}%22",
            md5_hex(&content)
        ))
    );
    assert_eq!(
        resp.header("etag").map(str::to_string),
        Some(format!("\"{}\"", md5_hex(&content)))
    );
    let got = env.get("dir/r%20e%2Bd.txt").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.body, content);
}

#[tokio::test]
async fn filename_variable_and_tags_and_checksum() {
    let env = Env::start(&unique("postvars")).await;
    let b = env.bucket.clone();
    let content = b"\x89PNG not really".to_vec();
    let sha256 = {
        use sha2::Digest;
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&content))
    };
    let tagging =
        "<Tagging><TagSet><Tag><Key>kind</Key><Value>photo</Value></Tag></TagSet></Tagging>";
    let form = Policy::new(&b, "photos/${filename}")
        .field("tagging", tagging)
        .field("x-amz-checksum-sha256", &sha256)
        .loose("key")
        .condition(json!(["starts-with", "$key", "photos/"]))
        .form(Some("C:\\Users\\me\\cat.png"), Some("image/png"), &content);
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    assert_eq!(resp.header("x-amz-checksum-sha256"), Some(sha256.as_str()));
    assert_eq!(
        resp.header("location").map(str::to_string),
        Some(format!("http://{}/{b}/photos%2Fcat.png", env.host()))
    );
    let meta = env
        .head("photos/cat.png")
        .await
        .expect("stored under the file name");
    assert_eq!(meta.size, content.len() as u64);
    assert_eq!(meta.tags, vec![("kind".to_string(), "photo".to_string())]);
    assert_eq!(meta.checksums, vec![("SHA256".to_string(), sha256.clone())]);
    assert_eq!(meta.header("content-type"), Some("image/png"));
    assert!(env.head("photos/${filename}").await.is_none());

    // A checksum that does not match: BadDigest and nothing stored.
    let form = Policy::new(&b, "photos/bad.png")
        .field("x-amz-checksum-sha256", &sha256)
        .form(Some("bad.png"), None, b"other bytes");
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.error_code(), "BadDigest");
    assert!(env.head("photos/bad.png").await.is_none());
}

#[tokio::test]
async fn content_length_range_violations_store_nothing() {
    let env = Env::start(&unique("postrange")).await;
    let b = env.bucket.clone();

    let form = Policy::new(&b, "big.bin")
        .condition(json!(["content-length-range", 1, 10]))
        .form(Some("big.bin"), None, &[7u8; 11]);
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.error_code(), "EntityTooLarge");
    assert_eq!(resp.elem("MaxSizeAllowed").as_deref(), Some("10"));
    assert_eq!(resp.elem("ProposedSize").as_deref(), Some("11"));
    assert!(env.head("big.bin").await.is_none());
    assert_eq!(env.get("big.bin").await.status, 404);

    let form = Policy::new(&b, "small.bin")
        .condition(json!(["content-length-range", 5, 10]))
        .form(Some("small.bin"), None, b"abcd");
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.error_code(), "EntityTooSmall");
    assert_eq!(resp.elem("MinSizeAllowed").as_deref(), Some("5"));
    assert_eq!(resp.elem("ProposedSize").as_deref(), Some("4"));
    assert!(env.head("small.bin").await.is_none());

    // No chunk of either attempt is left behind.
    env.assert_stream_empties().await;

    // Within the range it is stored.
    let form = Policy::new(&b, "fits.bin")
        .condition(json!(["content-length-range", 5, 10]))
        .form(Some("fits.bin"), None, b"abcdefghij");
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    assert_eq!(env.head("fits.bin").await.map(|m| m.size), Some(10));
}

#[tokio::test]
async fn policy_and_signature_failures() {
    let env = Env::start(&unique("postauth")).await;
    let b = env.bucket.clone();

    // starts-with violated.
    let form = Policy::new(&b, "elsewhere/x.txt")
        .loose("key")
        .condition(json!(["starts-with", "$key", "uploads/"]))
        .form(Some("x.txt"), None, b"x");
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(resp.error_code(), "AccessDenied");
    assert_eq!(
        resp.elem("Message").as_deref(),
        Some(
            r#"Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "uploads/"]"#
        )
    );
    assert!(env.head("elsewhere/x.txt").await.is_none());

    // A field the policy does not cover.
    let mut form = Policy::new(&b, "extra.txt").form(Some("x.txt"), None, b"x");
    form.fields
        .insert(1, ("x-amz-meta-sneaky".into(), "1".into()));
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(
        resp.elem("Message").as_deref(),
        Some("Invalid according to Policy: Extra input fields: x-amz-meta-sneaky")
    );

    // Expired.
    let mut policy = Policy::new(&b, "late.txt");
    policy.expires_in = time::Duration::seconds(-60);
    let resp = env.post_form(&policy.form(Some("x.txt"), None, b"x")).await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(resp.error_code(), "AccessDenied");
    assert_eq!(
        resp.elem("Message").as_deref(),
        Some("Invalid according to Policy: Policy expired.")
    );
    assert!(env.head("late.txt").await.is_none());

    // Signed with the wrong secret.
    let mut policy = Policy::new(&b, "forged.txt");
    policy.sk = "not-the-secret";
    let resp = env.post_form(&policy.form(Some("x.txt"), None, b"x")).await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(resp.error_code(), "SignatureDoesNotMatch");
    assert!(env.head("forged.txt").await.is_none());

    // A field changed after signing (the policy itself).
    let mut form = Policy::new(&b, "tampered.txt").form(Some("x.txt"), None, b"x");
    let p = form.fields.iter_mut().find(|(n, _)| n == "Policy").unwrap();
    p.1 = base64::engine::general_purpose::STANDARD
        .encode(r#"{"expiration":"2099-01-01T00:00:00Z","conditions":[]}"#);
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(resp.error_code(), "SignatureDoesNotMatch");

    // A key that only may read.
    let mut policy = Policy::new(&b, "reader.txt");
    policy.ak = READER_AK;
    policy.sk = READER_SK;
    let resp = env.post_form(&policy.form(Some("x.txt"), None, b"x")).await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(resp.error_code(), "AccessDenied");
    assert_eq!(resp.elem("Message").as_deref(), Some("Access Denied"));
    assert!(env.head("reader.txt").await.is_none());

    // An unknown key.
    let mut policy = Policy::new(&b, "who.txt");
    policy.ak = "AKIANOBODY0000000000";
    let resp = env.post_form(&policy.form(Some("x.txt"), None, b"x")).await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(resp.error_code(), "InvalidAccessKeyId");

    // Anonymous: no policy at all.
    let form = Form {
        fields: vec![("key".into(), "anon.txt".into())],
        file_name: Some("x.txt".into()),
        file_type: None,
        file: b"x".to_vec(),
        after: Vec::new(),
    };
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(resp.error_code(), "AccessDenied");
    assert!(env.head("anon.txt").await.is_none());

    // Nothing got in.
    env.assert_stream_empties().await;
}

#[tokio::test]
async fn malformed_forms() {
    let env = Env::start(&unique("postform")).await;
    let b = env.bucket.clone();

    // No key field.
    let mut form = Policy::new(&b, "k").form(Some("x.txt"), None, b"x");
    form.fields.retain(|(n, _)| n != "key");
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.error_code(), "InvalidArgument");
    assert_eq!(
        resp.elem("Message").as_deref(),
        Some("Bucket POST must contain a field named 'key'.  If it is specified, please check the order of the fields.")
    );
    assert_eq!(resp.elem("ArgumentName").as_deref(), Some("key"));

    // The key after the file does not count.
    let mut form = Policy::new(&b, "late-key").form(Some("x.txt"), None, b"x");
    let key = form.fields.remove(0);
    form.after.push(key);
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.error_code(), "InvalidArgument");
    assert_eq!(resp.elem("ArgumentName").as_deref(), Some("key"));

    // No file.
    let fields = Policy::new(&b, "nofile").sign();
    let boundary = "XyZ";
    let mut body = String::new();
    for (n, v) in &fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let resp = env
        .post(
            &format!("multipart/form-data; boundary={boundary}"),
            body.into_bytes(),
        )
        .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.error_code(), "InvalidArgument");
    assert_eq!(resp.elem("ArgumentName").as_deref(), Some("file"));

    // Not a form.
    let resp = env
        .post(
            "application/x-www-form-urlencoded",
            b"key=a&file=b".to_vec(),
        )
        .await;
    assert_eq!(resp.status, 412, "{}", resp.text());
    assert_eq!(resp.error_code(), "PreconditionFailed");

    // A form without a boundary.
    let resp = env.post("multipart/form-data", b"--x\r\n".to_vec()).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.error_code(), "MalformedPOSTRequest");

    // Truncated: the file part never ends.
    let form = Policy::new(&b, "cut.txt").form(Some("x.txt"), None, b"abc");
    let (ct, mut body) = form.encode();
    let cut = body.len() - 40;
    body.truncate(cut);
    let resp = env.post(&ct, body).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.error_code(), "MalformedPOSTRequest");
    assert!(env.head("cut.txt").await.is_none());

    // Too much user metadata.
    let long = "v".repeat(3000);
    let form = Policy::new(&b, "meta.txt")
        .field("x-amz-meta-big", &long)
        .form(Some("x.txt"), None, b"x");
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.error_code(), "MetadataTooLarge");

    // A public canned ACL under the default Block Public Access, and one that is no canned ACL.
    let form =
        Policy::new(&b, "acl.txt")
            .field("acl", "public-read")
            .form(Some("x.txt"), None, b"x");
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(resp.error_code(), "AccessDenied");
    assert!(env.head("acl.txt").await.is_none());
    let form = Policy::new(&b, "acl.txt")
        .field("acl", "aws-exec-read")
        .form(Some("x.txt"), None, b"x");
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.error_code(), "InvalidArgument");
    // Unsupported options.
    let form = Policy::new(&b, "sc.txt")
        .field("x-amz-storage-class", "GLACIER")
        .form(Some("x.txt"), None, b"x");
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.error_code(), "InvalidStorageClass");

    // A key over the limit.
    let long_key = "k".repeat(1025);
    let form = Policy::new(&b, &long_key).form(Some("x.txt"), None, b"x");
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.error_code(), "KeyTooLongError");

    env.assert_stream_empties().await;
}

#[tokio::test]
async fn large_file_is_streamed() {
    let env = Env::start(&unique("postlarge")).await;
    let b = env.bucket.clone();
    // Several store chunks (128 KiB each) and many body reads.
    let content: Vec<u8> = (0..(3 * 1024 * 1024 + 17))
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let form = Policy::new(&b, "large.bin")
        .condition(json!(["content-length-range", 0, 8 * 1024 * 1024]))
        .form(Some("large.bin"), None, &content);
    let resp = env.post_form(&form).await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    assert_eq!(
        resp.header("etag").map(str::to_string),
        Some(format!("\"{}\"", md5_hex(&content)))
    );
    let got = env.get("large.bin").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), content.len());
    assert!(got.body == content, "content differs");
}
