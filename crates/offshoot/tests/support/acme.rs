//! An ACME certificate authority and DNS for the automatic HTTPS tests and benchmark: Pebble
//! (Debian's `pebble`) with its own HTTPS certificate made here, pebble-challtestsrv as the DNS
//! it resolves hosts with for HTTP-01, and BIND (`bind9`) as a zone's primary server taking
//! RFC 2136 updates signed with TSIG.

use super::{Server, eventually, free_port};
use std::process::{Child, Command};

pub const DOMAIN: &str = "offshoot.test";
pub const TSIG_SECRET: &str = "b2Zmc2hvb3QtdGVzdC10c2lnLXNlY3JldC0zMmJ5dGVzIQ==";

pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(program: &str, args: &[&str], envs: &[(&str, &str)], log: &std::path::Path) -> Proc {
    let log = std::fs::File::create(log).expect("log");
    let err = log.try_clone().expect("log");
    let child = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdout(log)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("{program} cannot start ({e}): apt-get install pebble bind9; see scripts/services"));
    Proc(child)
}

pub fn listening(port: u16, what: &str) {
    eventually(20, what, || std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()));
}

/// A CA: Pebble with its own HTTPS certificate (made here), resolving names through `dns`, and
/// checking HTTP-01 on `http_port`; certificates valid `validity` seconds.
pub struct Pebble {
    _proc: Proc,
    management: u16,
    tls_root: std::path::PathBuf,
}

impl Pebble {
    /// The root Pebble signs certificates with (it makes a new one at each start).
    pub fn root(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("pebble-root.pem");
        let o = Command::new("curl")
            .args(["-sf", "--cacert", self.tls_root.to_str().expect("utf-8"), &format!("https://127.0.0.1:{}/roots/0", self.management)])
            .output()
            .expect("curl");
        assert!(o.status.success() && o.stdout.starts_with(b"-----BEGIN CERTIFICATE"), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::write(&path, &o.stdout).expect("root");
        path
    }
}

pub fn pebble(dir: &std::path::Path, port: u16, http_port: u16, dns: u16, validity: u64) -> Pebble {
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, "pebble");
    let k = rcgen::KeyPair::generate().expect("key");
    let c = params.self_signed(&k).expect("certificate");
    let (cert, key) = (dir.join("pebble-tls.pem"), dir.join("pebble-tls.key"));
    std::fs::write(&cert, c.pem()).expect("write");
    std::fs::write(&key, k.serialize_pem()).expect("write");
    let management = free_port();
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{port}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": cert, "privateKey": key,
        "httpPort": http_port, "tlsPort": free_port(),
        "ocspResponderURL": "", "externalAccountBindingRequired": false,
        "certificateValidityPeriod": validity,
    }});
    let file = dir.join("pebble.json");
    std::fs::write(&file, config.to_string()).expect("config");
    let proc = spawn(
        "pebble",
        &["-config", file.to_str().expect("utf-8"), "-dnsserver", &format!("127.0.0.1:{dns}")],
        &[("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_WFE_NONCEREJECT", "0"), ("PEBBLE_AUTHZREUSE", "0")],
        &dir.join("pebble.log"),
    );
    listening(port, "Pebble listens");
    Pebble { _proc: proc, management, tls_root: cert }
}

/// BIND, primary for `offshoot.test` (every name there is 127.0.0.1), taking updates signed
/// with the `offshoot` key.
pub fn bind(dir: &std::path::Path) -> (Proc, u16) {
    let port = free_port();
    let d = dir.display();
    std::fs::write(
        dir.join("zone"),
        "$TTL 60\n@ IN SOA ns.offshoot.test. admin.offshoot.test. 1 60 60 600 60\n@ IN NS ns.offshoot.test.\n@ IN A 127.0.0.1\nns IN A 127.0.0.1\n* IN A 127.0.0.1\n",
    )
    .expect("zone");
    let conf = format!(
        "options {{ directory \"{d}\"; pid-file \"{d}/named.pid\"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; \
         recursion no; dnssec-validation no; }};\ncontrols {{ }};\n\
         key \"offshoot\" {{ algorithm hmac-sha256; secret \"{TSIG_SECRET}\"; }};\n\
         zone \"{DOMAIN}\" {{ type primary; file \"{d}/zone\"; allow-update {{ key \"offshoot\"; }}; }};\n"
    );
    std::fs::write(dir.join("named.conf"), conf).expect("conf");
    let proc = spawn("named", &["-g", "-c", &format!("{d}/named.conf")], &[], &dir.join("named.log"));
    listening(port, "BIND listens");
    (proc, port)
}

/// `curl` of `https://host:port/` trusting only `root`: its body and its verbose trace.
pub fn curl(host: &str, port: u16, root: &std::path::Path) -> (bool, String, String) {
    let o = Command::new("curl")
        .args([
            "-sS",
            "-v",
            "--tlsv1.3",
            "--cacert",
            root.to_str().expect("utf-8"),
            "--resolve",
            &format!("{host}:{port}:127.0.0.1"),
            &format!("https://{host}:{port}/"),
        ])
        .output()
        .expect("curl");
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// pebble-challtestsrv as a DNS server only: every name is 127.0.0.1 (no IPv6 answer).
pub fn challtestsrv(dir: &std::path::Path) -> (Proc, u16) {
    let dns = free_port();
    let proc = spawn(
        "pebble-challtestsrv",
        &[
            "-dns01",
            &format!("127.0.0.1:{dns}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("127.0.0.1:{}", free_port()),
            "-defaultIPv6",
            "",
        ],
        &[],
        &dir.join("challtestsrv.log"),
    );
    (proc, dns)
}

/// The server arguments for ACME against Pebble's directory on `directory_port`, for the domain
/// `DOMAIN`; with `dns`, the wildcard by DNS-01 through BIND on that port with that TSIG key file.
pub fn acme_args(dir: &std::path::Path, directory_port: u16, dns: Option<(u16, &std::path::Path)>) -> Vec<String> {
    let ca = dir.join("pebble-tls.pem");
    let mut args: Vec<String> =
        ["--domain", DOMAIN, "--tls-listen", "127.0.0.1:0", "--acme-email", "ops@offshoot.test"].map(str::to_owned).to_vec();
    args.extend(["--acme-directory".to_owned(), format!("https://127.0.0.1:{directory_port}/dir")]);
    args.extend(["--acme-ca-bundle".to_owned(), ca.to_str().expect("utf-8").to_owned()]);
    if let Some((port, key_file)) = dns {
        args.extend(["--acme-dns".to_owned(), format!("rfc2136://127.0.0.1:{port}?zone={DOMAIN}&key-name=offshoot")]);
        args.extend(["--acme-dns-key-file".to_owned(), key_file.to_str().expect("utf-8").to_owned()]);
    }
    args
}

/// A server getting its certificates from Pebble (see `acme_args`).
pub fn server(dir: &std::path::Path, directory_port: u16, dns: Option<(u16, &std::path::Path)>) -> Server {
    let args = acme_args(dir, directory_port, dns);
    Server::new_with(None, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// One TLS connection held open (`openssl s_client`, trusting only `root`), asking for `/` of
/// a host again and again: what a certificate swap must not drop.
pub struct Held {
    child: Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    host: String,
}

impl Held {
    pub fn open(host: &str, port: u16, root: &std::path::Path) -> Held {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-verify_return_error", "-connect", &format!("127.0.0.1:{port}"), "-servername", host, "-CAfile"])
            .arg(root)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_client");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Held { child, stdin, lines, host: host.to_owned() }
    }

    /// The status line of one more request on the same connection (`None`: it was closed).
    pub fn get(&mut self) -> Option<String> {
        use std::io::Write;
        let request = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.stdin.write_all(request.as_bytes()).ok()?;
        self.stdin.flush().ok()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if line.starts_with("HTTP/1.1 ") {
                return Some(line.trim_end().to_owned());
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
