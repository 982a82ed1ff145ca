//! Real `redis-server` processes for the scale-out tests: a standalone server (optionally
//! with TLS, an ACL user and append-only persistence, so it can be killed and restarted with
//! its data), and a three-master Redis Cluster made with `redis-cli --cluster create`. Every
//! server listens on a free loopback port and is killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{free_port, temp_dir};

fn need(bin: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{bin} is not installed: the scale-out tests need a real Redis (scripts/test.sh installs redis-server and redis-tools)"
    );
}

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
    /// `redis://…` or `rediss://…` URL a client uses (with the ACL user when there is one).
    pub url: String,
    /// PEM of the CA that signed the TLS certificate (TLS servers only).
    pub ca_file: Option<PathBuf>,
    cli_auth: Vec<String>,
}

/// What kind of standalone server to start.
#[derive(Default)]
pub struct Options {
    pub tls: bool,
    /// An ACL user `portcullis` with this password (the default user is then disabled).
    pub acl_password: Option<&'static str>,
    /// Database number in the URL.
    pub db: u8,
}

impl Redis {
    pub fn start(opts: Options) -> Redis {
        need("redis-server");
        need("redis-cli");
        let port = free_port();
        let dir = temp_dir("redis");
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--save".into(),
            "".into(),
            // Append-only, fsync on every write: a killed server comes back with its data.
            "--appendonly".into(),
            "yes".into(),
            "--appendfsync".into(),
            "always".into(),
        ];
        let mut ca_file = None;
        if opts.tls {
            let (cert, key, ca) = self_signed(&dir);
            args.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                cert.display().to_string(),
                "--tls-key-file".into(),
                key.display().to_string(),
                "--tls-ca-cert-file".into(),
                ca.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ]);
            ca_file = Some(ca);
        } else {
            args.extend(["--port".into(), port.to_string()]);
        }
        let mut cli_auth = Vec::new();
        let userinfo = match opts.acl_password {
            Some(pw) => {
                std::fs::write(
                    dir.join("users.acl"),
                    format!("user default off\nuser portcullis on >{pw} ~* &* +@all\n"),
                )
                .unwrap();
                args.extend([
                    "--aclfile".into(),
                    dir.join("users.acl").display().to_string(),
                ]);
                cli_auth = vec![
                    "--user".into(),
                    "portcullis".into(),
                    "--pass".into(),
                    pw.into(),
                ];
                format!("portcullis:{pw}@")
            }
            None => String::new(),
        };
        let scheme = if opts.tls { "rediss" } else { "redis" };
        let url = format!("{scheme}://{userinfo}127.0.0.1:{port}/{}", opts.db);
        let mut r = Redis {
            child: None,
            port,
            dir,
            args,
            url,
            ca_file,
            cli_auth,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.cli(&["PING"]).is_some_and(|o| o.contains("PONG")) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// Runs `redis-cli` against this server; `None` when it failed.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.arg("-p")
            .arg(self.port.to_string())
            .arg("-h")
            .arg("127.0.0.1");
        if let Some(ca) = &self.ca_file {
            cmd.arg("--tls").arg("--cacert").arg(ca);
        }
        cmd.args(&self.cli_auth).arg("--no-auth-warning");
        let out = cmd.args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
            .filter(|s| !s.starts_with("ERR") && !s.contains("Could not connect"))
    }

    /// Kills the server (SIGKILL): clients see connection errors.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl CLI.
fn self_signed(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    need("openssl");
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=portcullis test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("ca.pem"),
    )
}

/// A three-master Redis Cluster on loopback ports.
pub struct Cluster {
    nodes: Vec<Child>,
    pub urls: Vec<String>,
}

impl Cluster {
    pub fn start() -> Cluster {
        need("redis-server");
        need("redis-cli");
        let dir = temp_dir("redis-cluster");
        // A cluster node also listens on its port + 10000 (the cluster bus): both must be free.
        let bus_free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok();
        let ports: Vec<u16> = (0..3)
            .map(|_| {
                loop {
                    let p = free_port();
                    if p <= 55_535 && bus_free(p) {
                        break p;
                    }
                }
            })
            .collect();
        let mut nodes = Vec::new();
        for p in &ports {
            let child = Command::new("redis-server")
                .args([
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    &p.to_string(),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &dir.join(format!("nodes-{p}.conf")).display().to_string(),
                    "--dir",
                    &dir.display().to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            nodes.push(child);
        }
        let cluster = Cluster {
            nodes,
            urls: ports
                .iter()
                .map(|p| format!("redis://127.0.0.1:{p}"))
                .collect(),
        };
        for p in &ports {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let ok = Command::new("redis-cli")
                    .args(["-p", &p.to_string(), "PING"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
                    .unwrap_or(false);
                if ok {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster node {p} did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let mut args = vec!["--cluster".to_string(), "create".to_string()];
        args.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
        args.extend([
            "--cluster-replicas".into(),
            "0".into(),
            "--cluster-yes".into(),
        ]);
        let out = Command::new("redis-cli").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = ports.iter().all(|p| {
                Command::new("redis-cli")
                    .args(["-p", &p.to_string(), "CLUSTER", "INFO"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// Every key on every master (for "a dump reveals no token").
    pub fn dump(&self) -> String {
        let mut all = String::new();
        for u in &self.urls {
            let port = u.rsplit(':').next().unwrap();
            let keys = Command::new("redis-cli")
                .args(["-p", port, "--scan"])
                .output()
                .unwrap();
            for k in String::from_utf8_lossy(&keys.stdout).lines() {
                all.push_str(k);
                all.push('\n');
                let v = Command::new("redis-cli")
                    .args(["-p", port, "DUMP", k])
                    .output()
                    .unwrap();
                all.push_str(&String::from_utf8_lossy(&v.stdout));
            }
        }
        all
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
