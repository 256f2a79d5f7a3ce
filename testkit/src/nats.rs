//! nats-server processes with JetStream for tests.

use std::net::TcpListener;
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
    /// Holds the port while the server is stopped, so that no other test's server gets it.
    placeholder: Option<TcpListener>,
    dir: tempfile::TempDir,
    /// A `cluster {}` block: the server is one of a cluster, and is up before JetStream is
    /// (which needs a quorum of its peers).
    cluster: Option<String>,
}

impl NatsServer {
    pub async fn start() -> NatsServer {
        let mut s = NatsServer::new(free_port(), None);
        s.spawn().await;
        s
    }

    fn new(port: u16, cluster: Option<String>) -> NatsServer {
        NatsServer {
            child: None,
            port,
            name: unique("nats"),
            placeholder: None,
            dir: tempfile::tempdir().unwrap(),
            cluster,
        }
    }

    /// `n` servers configured as one cluster (routes to each other on 127.0.0.1), none
    /// started: [`NatsServer::restart`] starts each.
    pub fn cluster(n: usize) -> Vec<NatsServer> {
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
        clients
            .iter()
            .zip(route_ports)
            .map(|(client, p)| {
                NatsServer::new(
                    *client,
                    Some(format!(
                        "cluster {{\n  name: {name}\n  listen: 127.0.0.1:{p}\n  routes: [{}]\n}}\n",
                        routes.join(", ")
                    )),
                )
            })
            .collect()
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
            if let Some(conf) = &self.cluster {
                let file = self.dir.path().join("cluster.conf");
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
                std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
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
                if self.cluster.is_some()
                    || async_nats::jetstream::new(c).query_account().await.is_ok()
                {
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

    /// Stops the server (SIGKILL); the store stays for [`NatsServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.placeholder = TcpListener::bind(("127.0.0.1", self.port)).ok();
        }
    }

    /// Starts it (again) on its port with its store.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.placeholder = None;
        self.spawn().await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default();
            eprintln!("---- nats-server log ----\n{log}");
        }
    }
}
