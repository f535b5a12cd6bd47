//! `nats-server` (Debian's package; `scripts/test.sh` installs it) with
//! JetStream on free loopback ports: one server, or a three-server cluster.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

pub struct Nats {
    child: Option<tokio::process::Child>,
    pub port: u16,
    args: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary() -> &'static str {
    for p in ["/usr/sbin/nats-server", "/usr/bin/nats-server"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    "nats-server"
}

/// Arguments of a JetStream server named `name` on `port`, storing under `dir`.
fn server_args(port: u16, dir: &Path, name: &str) -> Vec<String> {
    vec![
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-js".into(),
        "-sd".into(),
        dir.display().to_string(),
        "-n".into(),
        name.into(),
    ]
}

impl Nats {
    /// One JetStream server storing under `dir`.
    pub async fn single(dir: &Path) -> Nats {
        let port = free_port();
        let mut n = Nats {
            child: None,
            port,
            args: server_args(port, dir, "solo"),
        };
        n.start().await;
        n
    }

    /// A three-server JetStream cluster storing under `dir/n{1,2,3}`.
    pub async fn cluster(dir: &Path) -> Vec<Nats> {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes = ports
            .iter()
            .map(|(_, r)| format!("nats://127.0.0.1:{r}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut out = Vec::new();
        for (i, (port, route)) in ports.iter().enumerate() {
            let sd = dir.join(format!("n{}", i + 1));
            std::fs::create_dir_all(&sd).unwrap();
            let mut args = server_args(*port, &sd, &format!("n{}", i + 1));
            args.extend([
                "--cluster_name".into(),
                "chats3-test".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{route}"),
                "--routes".into(),
                routes.clone(),
            ]);
            let mut n = Nats {
                child: None,
                port: *port,
                args,
            };
            n.spawn();
            out.push(n);
        }
        for n in &out {
            n.wait_listening().await;
        }
        out
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = tokio::process::Command::new(binary())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server is needed for the cluster tests (apt-get install nats-server)");
        self.child = Some(child);
    }

    async fn wait_listening(&self) {
        let addr = format!("127.0.0.1:{}", self.port);
        crate::common::until(
            Duration::from_secs(20),
            "nats-server to listen",
            async || tokio::net::TcpStream::connect(&addr).await.ok().map(drop),
        )
        .await;
    }

    /// (Re)starts the server on its port and storage.
    pub async fn start(&mut self) {
        self.spawn();
        self.wait_listening().await;
    }

    /// Stops it hard (`kill -9`).
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
            let _ = c.wait().await;
        }
    }
}
