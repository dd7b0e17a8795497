//! A Docker engine of a test's own: `dockerd` on its own socket, data root and address pool,
//! so that a test can restart it, stop it or freeze it without touching the machine's engine
//! (which every other test uses). Its containers reach each other on Offshoot's networks; the
//! host reaches them by address (no port publishing, no iptables of its own). It holds
//! `busybox:stable`, copied from the machine's engine (nothing can be pulled).

use super::eventually;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Engine {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Its default bridge (the machine's engine has `docker0`): builds run their steps there.
    bridge: String,
    /// The address pool its environments' networks take from.
    pool: String,
}

/// Adds (`-I`) or deletes (`-D`) the rule accepting traffic within `pool`.
fn iptables(op: &str, pool: &str) -> bool {
    Command::new("iptables")
        .args([op, "DOCKER-USER", "-s", pool, "-d", pool, "-j", "ACCEPT"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `ip` with these arguments; whether it succeeded.
fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

impl Engine {
    /// Starts one for a server whose environments' networks come from `pool` (a /16 no other
    /// server of this machine uses), and copies `busybox:stable` into it.
    pub fn start(pool: &str) -> Engine {
        // Short paths: a unix socket's path has at most 107 bytes.
        let dir = tempfile::Builder::new().prefix("oe").tempdir_in("/tmp").expect("tempdir");
        // A bridge with a /24 of 10.215.0.0/16 no other engine of this machine uses.
        let mut bridge = String::new();
        for n in 0..250u32 {
            let octet = (std::process::id() + n) % 250 + 1;
            let name = format!("oe{octet}");
            if ip(&["link", "add", &name, "type", "bridge"]) {
                assert!(ip(&["addr", "add", &format!("10.215.{octet}.1/24"), "dev", &name]) && ip(&["link", "set", &name, "up"]));
                bridge = name;
                break;
            }
        }
        assert!(!bridge.is_empty(), "no bridge for the test's engine");
        // The machine's engine drops forwarded traffic between bridges it does not know: its
        // `DOCKER-USER` chain lets this engine's containers reach each other.
        assert!(iptables("-I", pool), "cannot let the pool {pool} through the firewall");
        let mut e = Engine { dir, child: None, bridge, pool: pool.to_owned() };
        e.run();
        let mut save = Command::new("docker").args(["save", "busybox:stable"]).stdout(Stdio::piped()).spawn().expect("docker save");
        let image = save.stdout.take().expect("stdout");
        let load = Command::new("docker").args(["-H", &e.host(), "load"]).stdin(image).output().expect("docker load");
        let saved = save.wait().expect("docker save");
        assert!(saved.success() && load.status.success(), "cannot copy busybox:stable: {}", String::from_utf8_lossy(&load.stderr));
        e
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `DOCKER_HOST` for it.
    pub fn host(&self) -> String {
        format!("unix://{}", self.path("docker.sock").display())
    }

    fn run(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.path("dockerd.log")).expect("log");
        let child = Command::new("dockerd")
            .args(["--host", &self.host()])
            .arg("--data-root")
            .arg(self.path("data"))
            .arg("--exec-root")
            .arg(self.path("exec"))
            .arg("--pidfile")
            .arg(self.path("dockerd.pid"))
            // A bridge of its own, and no firewall rules of its own.
            .args(["--bridge", &self.bridge, "--iptables=false", "--ip-masq=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd");
        self.child = Some(child);
        eventually(60, "the test's engine answers", || self.answers().then_some(()));
    }

    /// Whether it answers now.
    pub fn answers(&self) -> bool {
        Command::new("docker")
            .args(["-H", &self.host(), "version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `docker` against it; its standard output.
    pub fn docker(&self, args: &[&str]) -> String {
        let o = Command::new("docker").args(["-H", &self.host()]).args(args).output().expect("docker CLI");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").args([signal, &c.id().to_string()]).status();
        }
    }

    /// Stops it as a service manager would (SIGTERM: its containers are stopped) and waits.
    pub fn stop(&mut self) {
        self.signal("-TERM");
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// Stops it and starts it again; containers with a restart policy come back.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Freezes it (SIGSTOP): it stops answering, its containers keep running.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Offshoot's containers, networks and volumes it holds (`kind name`).
    pub fn offshoot_objects(&self) -> Vec<String> {
        let label = "label=offshoot.managed=true";
        let mut out = Vec::new();
        for (kind, args) in [
            ("container", vec!["ps", "-a", "--filter", label, "--format", "{{.Names}}"]),
            ("network", vec!["network", "ls", "--filter", label, "--format", "{{.Name}}"]),
            ("volume", vec!["volume", "ls", "--filter", label, "--format", "{{.Name}}"]),
        ] {
            out.extend(self.docker(&args).lines().filter(|l| !l.is_empty()).map(|l| format!("{kind} {l}")));
        }
        out
    }

    /// Its log, to show when a test fails.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("dockerd.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pool(&self) -> &str {
        &self.pool
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.thaw();
        if self.child.is_some() {
            for id in self.docker(&["ps", "-aq"]).split_whitespace() {
                self.docker(&["rm", "-f", id]);
            }
            let _ = self.docker(&["network", "prune", "-f"]);
            let _ = self.docker(&["volume", "prune", "-f"]);
        }
        self.stop();
        ip(&["link", "del", &self.bridge]);
        iptables("-D", &self.pool);
    }
}
