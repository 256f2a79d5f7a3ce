//! Harness for the operator's tests against real servers: one etcd + kube-apiserver per test
//! binary (started with `scripts/tools-k8s.sh up`, CRDs from `crds/yaml` installed), and per
//! test a namespace, a nats-server with JetStream and the `jets3-operator` binary.
//!
//! A missing kube-apiserver, etcd or nats-server fails the test with "run `make tools`".

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client as S3;
use jets3_crds::k8s::{Condition, CustomResourceDefinition, S3Bucket, S3Credential};
use jets3_crds::GatewayConfig;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

pub use jets3_testkit::{free_port, tool, unique, NatsServer};

/// Generous: the test machine is shared and slow.
pub const TIMEOUT: Duration = Duration::from_secs(45);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ---------------------------------------------------------------------------------------------
// Control plane

/// An etcd + kube-apiserver on loopback, stopped when this test process exits.
pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    /// Starts one with `scripts/tools-k8s.sh up`, watched by a shell that runs `down` (and
    /// removes the directory) once this test process is gone, even if it crashes.
    pub fn start(with_crds: bool) -> ControlPlane {
        tool("etcd");
        tool("kube-apiserver");
        let dir =
            std::env::temp_dir().join(unique(&format!("jets3-optest-{}", std::process::id())));
        std::fs::create_dir_all(&dir).unwrap();
        let script = repo_root().join("scripts/tools-k8s.sh");
        // `up` picks free ports, which someone else may take before etcd binds them: retry.
        let watchdog = r#"for i in 1 2 3; do
  if "$0" up "$1" >"$1/up.log" 2>&1; then echo ok >"$1/status"; break; fi
  "$0" down "$1" >/dev/null 2>&1
  if [ "$i" = 3 ]; then echo failed >"$1/status"; fi
done
while kill -0 "$2" 2>/dev/null; do sleep 1; done
"$0" down "$1" >/dev/null 2>&1; rm -rf "$1""#;
        // `setsid -f`: the watchdog runs detached and outlives this process.
        let started = Command::new("setsid")
            .args(["-f", "bash", "-c", watchdog])
            .arg(&script)
            .arg(&dir)
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("setsid and bash run");
        assert!(started.success(), "cannot start the control plane watchdog");
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            match std::fs::read_to_string(dir.join("status")).as_deref() {
                Ok("ok\n") => break,
                Ok(_) => panic!(
                    "scripts/tools-k8s.sh up failed:\n{}",
                    std::fs::read_to_string(dir.join("up.log")).unwrap_or_default()
                ),
                Err(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "control plane not up after 180 s:\n{}",
                std::fs::read_to_string(dir.join("up.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let cp = ControlPlane {
            kubeconfig: dir.join("kubeconfig"),
            dir,
        };
        if with_crds {
            let kc = cp.kubeconfig.clone();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async move { install_crds(&client_for(&kc).await).await })
            })
            .join()
            .expect("CRDs installed");
        }
        cp
    }

    /// The control plane shared by every test of this binary, with the CRDs.
    pub fn shared() -> &'static ControlPlane {
        static CP: OnceLock<ControlPlane> = OnceLock::new();
        CP.get_or_init(|| ControlPlane::start(true))
    }

    pub async fn client(&self) -> Client {
        client_for(&self.kubeconfig).await
    }

    /// Restarts kube-apiserver with the same flags (etcd keeps the data).
    pub async fn restart_apiserver(&self) {
        let pid_file = self.dir.join("kube-apiserver.pid");
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        signal(pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("kube-apiserver.log"))
            .unwrap();
        // Not a child we wait for: the watchdog stops it through the pid file.
        let child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        std::fs::write(&pid_file, child.id().to_string()).unwrap();
        std::mem::forget(child);
        let client = self.client().await;
        eventually("kube-apiserver answers after its restart", || async {
            client.apiserver_version().await.ok()
        })
        .await;
    }
}

/// A client with the credentials of `kubeconfig`.
pub async fn client_for(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("client config");
    Client::try_from(config).expect("client")
}

/// Applies the CRDs from `crds/yaml/jets3.io_crds.yaml` and waits until they are served.
pub async fn install_crds(client: &Client) {
    let text = std::fs::read_to_string(repo_root().join("crds/yaml/jets3.io_crds.yaml")).unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let crd: CustomResourceDefinition = serde::Deserialize::deserialize(doc).unwrap();
        api.patch(
            &crd.name_any(),
            &PatchParams::apply("jets3-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("CRD applied");
    }
    let lp = ListParams::default().limit(1);
    eventually("the CRDs are served", || async {
        let b = Api::<S3Bucket>::all(client.clone()).list(&lp).await.ok()?;
        let c = Api::<S3Credential>::all(client.clone())
            .list(&lp)
            .await
            .ok()?;
        Some((b, c))
    })
    .await;
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// Polls `f` until it returns `Some`, or panics after [`TIMEOUT`] naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The operator binary

/// Settings for one operator process.
#[derive(Clone)]
pub struct OperatorOptions {
    pub namespaces: Vec<String>,
    /// The operator's own namespace (Lease, state ConfigMap).
    pub namespace: String,
    pub leader_election: Option<String>,
    /// `--resync-interval`.
    pub resync: String,
    /// More flags (the config push's).
    pub extra_args: Vec<String>,
    /// Another kubeconfig than the control plane admin's (a ServiceAccount's token).
    pub kubeconfig: Option<PathBuf>,
    /// Another `jets3-operator` binary than this build's (a benchmark's baseline).
    pub binary: Option<PathBuf>,
}

/// A running `jets3-operator`; killed on drop, its log printed if the test is failing.
pub struct Operator {
    child: Option<Child>,
    pub metrics: String,
    /// The loopback debug listener (`/config`).
    pub debug: String,
    pub log: PathBuf,
    pub config_file: PathBuf,
    name: String,
}

impl Operator {
    pub fn start(
        cp: &ControlPlane,
        nats: &NatsServer,
        dir: &Path,
        name: &str,
        o: &OperatorOptions,
    ) -> Operator {
        let port = free_port();
        let debug_port = free_port();
        let log = dir.join(format!("{name}.log"));
        let config_file = dir.join("gateway.yaml");
        let mut cmd = Command::new(
            o.binary
                .as_deref()
                .unwrap_or(Path::new(env!("CARGO_BIN_EXE_jets3-operator"))),
        );
        cmd.env(
            "KUBECONFIG",
            o.kubeconfig.as_ref().unwrap_or(&cp.kubeconfig),
        )
        .env("JETS3_LOG", "info,kube=warn")
        .env_remove("JETS3_WATCH_NAMESPACES")
        .args(["--nats-url", &nats.url()])
        .args(["--gateway-endpoint", "http://jets3-gateway.test:9000"])
        .args(["--region", "eu-test-1"])
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .args(["--debug-listen", &format!("127.0.0.1:{debug_port}")])
        .args(["--watch-namespaces", &o.namespaces.join(",")])
        .args(["--namespace", &o.namespace])
        .args(["--pod-name", name])
        .args(["--resync-interval", &o.resync])
        .args(["--delete-timeout", "6s"])
        .arg("--config-file")
        .arg(&config_file)
        .args(&o.extra_args);
        if let Some(lease) = &o.leader_election {
            cmd.args([
                "--leader-election",
                "--lease-name",
                lease,
                "--lease-duration",
                "3s",
            ]);
        }
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("jets3-operator runs");
        Operator {
            child: Some(child),
            metrics: format!("http://127.0.0.1:{port}"),
            debug: format!("http://127.0.0.1:{debug_port}"),
            log,
            config_file,
            name: name.to_string(),
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        self.wait_exit(child).await
    }

    /// Kills it (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit by itself.
    pub async fn exited(&mut self) -> std::process::ExitStatus {
        let child = self.child.take().expect("running");
        self.wait_exit(child).await
    }

    async fn wait_exit(&self, mut child: Child) -> std::process::ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /config` on the debug listener: status and body, or `None` when it does not
    /// answer.
    pub async fn debug_config(&self) -> Option<(u16, String)> {
        http_get(&format!("{}/config", self.debug)).await
    }

    /// GET on the metrics listener: status and body, or `None` when it does not answer.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&format!("{}{path}", self.metrics)).await
    }

    /// The config file the operator writes, once it exists.
    pub fn config(&self) -> Option<GatewayConfig> {
        let text = std::fs::read_to_string(&self.config_file).ok()?;
        GatewayConfig::from_yaml(&text).ok()
    }

    /// Waits until the written config satisfies `f`.
    pub async fn config_where(
        &self,
        what: &str,
        f: impl Fn(&GatewayConfig) -> bool,
    ) -> GatewayConfig {
        eventually(what, || async { self.config().filter(|c| f(c)) }).await
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() || std::env::var_os("JETS3_TEST_SHOW_LOG").is_some() {
            eprintln!("---- {} log ----\n{}", self.name, self.log_text());
        }
    }
}

/// A minimal HTTP/1.1 GET over TCP (the tests need no HTTP client library).
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (addr, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((code, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A test's world: namespaces, NATS and an operator

pub struct Env {
    pub cp: &'static ControlPlane,
    pub client: Client,
    /// The test's namespaces; the first is the operator's own.
    pub namespaces: Vec<String>,
    pub nats: NatsServer,
    pub operator: Option<Operator>,
    pub dir: tempfile::TempDir,
}

impl Env {
    /// `count` fresh namespaces, a nats-server and an operator watching those namespaces.
    pub async fn new(count: usize) -> Env {
        let env = Env::without_operator(count).await;
        env.with_operator()
    }

    /// Like [`Env::new`], without starting the operator.
    pub async fn without_operator(count: usize) -> Env {
        let cp = ControlPlane::shared();
        let client = cp.client().await;
        let mut namespaces = Vec::new();
        for _ in 0..count {
            let ns = unique("t");
            create_namespace(&client, &ns).await;
            namespaces.push(ns);
        }
        Env {
            cp,
            client,
            namespaces,
            nats: NatsServer::start().await,
            operator: None,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn options(&self) -> OperatorOptions {
        OperatorOptions {
            namespaces: self.namespaces.clone(),
            namespace: self.namespaces[0].clone(),
            leader_election: None,
            resync: "2s".into(),
            extra_args: Vec::new(),
            kubeconfig: None,
            binary: None,
        }
    }

    fn with_operator(mut self) -> Env {
        let o = self.options();
        self.operator = Some(Operator::start(
            self.cp,
            &self.nats,
            self.dir.path(),
            "operator",
            &o,
        ));
        self
    }

    pub fn operator(&self) -> &Operator {
        self.operator.as_ref().expect("an operator runs")
    }

    /// Starts an (additional) operator with these options.
    pub fn start_operator(&self, name: &str, o: &OperatorOptions) -> Operator {
        Operator::start(self.cp, &self.nats, self.dir.path(), name, o)
    }

    pub fn ns(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    pub fn buckets(&self, ns: &str) -> Api<S3Bucket> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn credentials(&self, ns: &str) -> Api<S3Credential> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn configmaps(&self, ns: &str) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Creates an S3Bucket from its spec.
    pub async fn create_bucket(&self, ns: &str, name: &str, spec: Value) -> S3Bucket {
        create(&self.buckets(ns), "S3Bucket", name, spec).await
    }

    /// Creates an S3Credential from its spec.
    pub async fn create_credential(&self, ns: &str, name: &str, spec: Value) -> S3Credential {
        create(&self.credentials(ns), "S3Credential", name, spec).await
    }

    /// Merge-patches an object's spec.
    pub async fn patch_spec<K>(&self, api: &Api<K>, name: &str, spec: Value) -> K
    where
        K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
    {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap_or_else(|e| panic!("patching {name}: {e}"))
    }

    /// Waits until condition `type_` of the object has `status` (and `reason`, if given).
    pub async fn condition<K>(
        &self,
        api: &Api<K>,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> K
    where
        K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize,
    {
        let what = format!("{name} has {type_}={status} {}", reason.unwrap_or(""));
        let mut last = None;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(obj) = api.get(name).await {
                let c = conditions_of(&obj).into_iter().find(|c| c.type_ == type_);
                if c.as_ref()
                    .is_some_and(|c| c.status == status && reason.is_none_or(|r| c.reason == r))
                {
                    return obj;
                }
                last = Some(serde_json::to_value(&obj).unwrap()["status"].clone());
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}; last status: {last:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the object is gone.
    pub async fn gone<K>(&self, api: &Api<K>, name: &str)
    where
        K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
    {
        eventually(&format!("{name} is gone"), || async {
            match api.get_opt(name).await {
                Ok(None) => Some(()),
                _ => None,
            }
        })
        .await
    }

    /// The Events about an object, as (type, reason, note).
    pub async fn events(&self, ns: &str, name: &str) -> Vec<(String, String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), ns);
        let list = api.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits for an Event with `reason` about the object; returns its note.
    pub async fn event(&self, ns: &str, name: &str, reason: &str) -> String {
        eventually(&format!("an Event {reason} about {name}"), || async {
            self.events(ns, name)
                .await
                .into_iter()
                .find(|(_, r, _)| r == reason)
                .map(|(_, _, note)| note)
        })
        .await
    }

    /// Deletes an object.
    pub async fn delete<K>(&self, api: &Api<K>, name: &str)
    where
        K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
    {
        api.delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting {name}: {e}"));
    }
}

async fn create<K>(api: &Api<K>, kind: &str, name: &str, spec: Value) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    let obj: K = serde_json::from_value(json!({
        "apiVersion": "jets3.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("creating {kind} {name}: {e}"))
}

pub async fn create_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
}

/// The status conditions of any jets3 object.
pub fn conditions_of<K: serde::Serialize>(obj: &K) -> Vec<Condition> {
    let v = serde_json::to_value(obj).unwrap();
    serde_json::from_value(v["status"]["conditions"].clone()).unwrap_or_default()
}

/// A condition of an object (panics when absent).
pub fn condition_of<K: serde::Serialize>(obj: &K, type_: &str) -> Condition {
    conditions_of(obj)
        .into_iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

/// The value of a sample in Prometheus text, by its name with labels (`name{a="b"}`).
pub fn metric(text: &str, sample: &str) -> Option<String> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')
            .map(str::to_string)
    })
}

/// The string value of a Secret's key.
pub fn secret_value(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .map(|v| String::from_utf8(v.0.clone()).unwrap())
}

// ---------------------------------------------------------------------------------------------
// S3 clients (aws-sdk-s3) with an S3Credential's Secret keys

/// An S3 client of the gateway at `addr`.
pub fn s3(addr: SocketAddr, id: &str, secret: &str) -> S3 {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-test-1"))
        .endpoint_url(format!("http://{addr}"))
        .force_path_style(true)
        .credentials_provider(Credentials::new(id, secret, None, None, "operator-test"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(RetryConfig::disabled())
        .build();
    S3::from_conf(config)
}

/// The S3 error code of a failed call ("" when it succeeded).
pub async fn put(c: &S3, bucket: &str, key: &str, body: &[u8]) -> String {
    match c
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
    {
        Ok(_) => String::new(),
        Err(e) => e.code().unwrap_or("no code").to_string(),
    }
}

/// The object, or the S3 error code.
pub async fn get(c: &S3, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
    match c.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => Ok(o.body.collect().await.unwrap().into_bytes().to_vec()),
        Err(e) => Err(e.code().unwrap_or("no code").to_string()),
    }
}

/// The access key pair in an S3Credential's Secret.
pub async fn secret_keys(env: &Env, ns: &str, name: &str) -> (String, String) {
    let s = env.secrets(ns).get(name).await.unwrap();
    (
        secret_value(&s, "AWS_ACCESS_KEY_ID").unwrap(),
        secret_value(&s, "AWS_SECRET_ACCESS_KEY").unwrap(),
    )
}
