//! nats-server processes with JetStream for tests: one [`NatsServer`], or a [`NatsCluster`]
//! of them with routes to each other.

use std::net::TcpListener;
use std::ops::Index;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, tool, unique};

/// A nats-server with JetStream on a free port and its own store; killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    /// The server's name (`-n`): readiness checks that this one, not another test's server
    /// that took the port while it was free, answers there.
    name: String,
    /// Holds the port while the server is killed, so that no other test's server gets it.
    placeholder: Option<TcpListener>,
    dir: tempfile::TempDir,
    /// A config file's text (a `cluster {}` block, JetStream limits), if any.
    conf: Option<String>,
    /// One of a cluster: up before its JetStream is (which needs a quorum of its peers).
    clustered: bool,
}

impl NatsServer {
    pub async fn start() -> NatsServer {
        let mut s = NatsServer::new(free_port(), None, false);
        s.spawn().await;
        s
    }

    /// A server whose JetStream may store at most `max_file_store` (a NATS size: `4MB`).
    pub async fn start_limited(max_file_store: &str) -> NatsServer {
        let conf = format!("jetstream {{ max_file_store: {max_file_store} }}\n");
        let mut s = NatsServer::new(free_port(), Some(conf), false);
        s.spawn().await;
        s
    }

    fn new(port: u16, conf: Option<String>, clustered: bool) -> NatsServer {
        NatsServer {
            child: None,
            port,
            name: unique("nats"),
            placeholder: None,
            dir: tempfile::tempdir().unwrap(),
            conf,
            clustered,
        }
    }

    async fn spawn(&mut self) {
        let bin = tool("nats-server");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("nats.log"))
                .unwrap();
            let mut cmd = Command::new(&bin);
            if let Some(conf) = &self.conf {
                let file = self.dir.path().join("nats.conf");
                std::fs::write(&file, conf).unwrap();
                cmd.arg("-c").arg(file);
            }
            let mut child = cmd
                .args([
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-n",
                    &self.name,
                    "-sd",
                ])
                .arg(self.dir.path().join("js"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            if self.ready().await {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            // The port may still be held for a moment after a stop.
            assert!(
                Instant::now() < deadline,
                "nats-server did not start:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn ready(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Ok(c)) =
                tokio::time::timeout(Duration::from_secs(2), async_nats::connect(self.url())).await
            {
                if c.server_info().server_name != self.name {
                    return false;
                }
                if self.clustered || async_nats::jetstream::new(c).query_account().await.is_ok() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's name (`server_name` in its INFO, a stream leader's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// A JetStream context on a fresh connection.
    pub async fn js(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(async_nats::connect(self.url()).await.unwrap())
    }

    /// The bucket's stream config, or `None` when there is no such bucket.
    pub async fn bucket(&self, name: &str) -> Option<async_nats::jetstream::stream::Info> {
        let js = self.js().await;
        match js.get_stream(format!("OBJ_{name}")).await {
            Ok(s) => Some(s.cached_info().clone()),
            Err(_) => None,
        }
    }

    /// Kills the server (SIGKILL, mid-write); the store stays for [`NatsServer::restart`],
    /// and the port stays held (by a listener that never answers) so that no other test's
    /// server takes it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.placeholder = TcpListener::bind(("127.0.0.1", self.port)).ok();
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s); the store stays for
    /// [`NatsServer::restart`], and connections to the port are refused meanwhile.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("server running");
        let ok = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} nats-server");
    }

    /// Starts it (again) on its port with its store.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.placeholder = None;
        self.spawn().await;
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- nats-server log ----\n{}", self.log());
        }
    }
}

/// nats-servers clustered on 127.0.0.1 with routes to each other, JetStream on each with its
/// own store; nodes can be killed (SIGKILL), frozen (SIGSTOP) and restarted.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
    /// Whether JetStream has answered through every node once (the cluster has formed).
    formed: bool,
}

impl NatsCluster {
    /// `n` servers configured as one cluster, none started: [`NatsCluster::restart`] starts
    /// each (as pods that come up one after another).
    pub fn configure(n: usize) -> NatsCluster {
        NatsCluster::configure_with(n, "")
    }

    /// [`NatsCluster::configure`], with `extra` (e.g. a `jetstream {}` block of limits) in
    /// every node's config file.
    pub fn configure_with(n: usize, extra: &str) -> NatsCluster {
        // Client and route ports all distinct: the listeners are held until all are picked.
        let held: Vec<TcpListener> = (0..2 * n)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        let ports: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().expect("bound").port())
            .collect();
        drop(held);
        let (clients, route_ports) = ports.split_at(n);
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let name = unique("cl");
        let nodes = clients
            .iter()
            .zip(route_ports)
            .map(|(client, p)| {
                let conf = format!(
                    "cluster {{\n  name: {name}\n  listen: 127.0.0.1:{p}\n  routes: [{}]\n}}\n{extra}",
                    routes.join(", ")
                );
                NatsServer::new(*client, Some(conf), true)
            })
            .collect();
        NatsCluster {
            nodes,
            formed: false,
        }
    }

    /// Starts `n` clustered servers and waits until JetStream answers through each.
    pub async fn start(n: usize) -> NatsCluster {
        NatsCluster::start_with(n, "").await
    }

    /// [`NatsCluster::start`] with `extra` in every node's config file.
    pub async fn start_with(n: usize, extra: &str) -> NatsCluster {
        let mut cluster = NatsCluster::configure_with(n, extra);
        for node in &mut cluster.nodes {
            node.spawn().await;
        }
        cluster.wait_ready().await;
        cluster
    }

    /// Every node's URL, for a client given the whole cluster.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// The node names, in order.
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Waits until JetStream answers through every running node.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for n in self.nodes.iter().filter(|n| n.running()) {
            loop {
                let ok = async {
                    let c = async_nats::connect(n.url()).await.ok()?;
                    async_nats::jetstream::new(c).query_account().await.ok()
                };
                if tokio::time::timeout(Duration::from_secs(3), ok)
                    .await
                    .ok()
                    .flatten()
                    .is_some()
                {
                    break;
                }
                assert!(Instant::now() < deadline, "the NATS cluster is not ready");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.formed |= self.nodes.iter().all(NatsServer::running);
    }

    /// The index of the node leading `stream`.
    pub async fn leader_of(&self, stream: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for n in self.nodes.iter().filter(|n| n.running()) {
                let leader = async {
                    let c = async_nats::connect(n.url()).await.ok()?;
                    let js = async_nats::jetstream::new(c);
                    let mut s = js.get_stream(stream).await.ok()?;
                    let info = s.info().await.ok()?;
                    info.cluster.as_ref().and_then(|c| c.leader.clone())
                };
                if let Ok(Some(name)) = tokio::time::timeout(Duration::from_secs(3), leader).await {
                    if let Some(i) = self.nodes.iter().position(|n| n.name == name) {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "{stream} has no leader");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL: the node dies at once, mid-write.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// SIGSTOP / SIGCONT: the node freezes with its connections open (like a partition).
    pub fn freeze(&self, i: usize, frozen: bool) {
        if frozen {
            self.nodes[i].pause();
        } else {
            self.nodes[i].resume();
        }
    }

    /// Starts a node (again, after a kill) with its store; in a cluster that has formed,
    /// waits until JetStream answers through every running node (a new cluster's JetStream
    /// waits for all its nodes).
    pub async fn restart(&mut self, i: usize) {
        self.nodes[i].restart().await;
        if self.formed {
            self.wait_ready().await;
        }
    }

    /// A node's log.
    pub fn log(&self, i: usize) -> String {
        self.nodes[i].log()
    }
}

impl Index<usize> for NatsCluster {
    type Output = NatsServer;

    fn index(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }
}
