//! The data directory's disk full: the server's data directory (its SQLite store, mirrors,
//! static sites and temporary files) and its log file on a small filesystem of the test's own
//! (a size-limited tmpfs). A static build too large for it, and then a disk filled to the last
//! byte, fail what they must with the reason, lose nothing, leave nothing behind, and once
//! there is room again everything works without a restart.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

/// A size-limited filesystem mounted for the test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(megabytes: u32) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m,mode=0755"), "offshoot-test-disk"])
            .arg(dir.path())
            .status()
            .expect("mount runs")
            .success();
        assert!(ok, "cannot mount a tmpfs at {} (the tests run as root)", dir.path().display());
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes free.
    fn free(&self) -> u64 {
        let o = Command::new("df").args(["--output=avail", "-B1"]).arg(self.path()).output().expect("df");
        String::from_utf8_lossy(&o.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df's answer")
    }

    /// Fills it to the last byte with a file; the file.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        // `dd` stops at "No space left on device", which is the point.
        let _ = Command::new("dd").arg("if=/dev/zero").arg(format!("of={}", filler.display())).args(["bs=64k"]).output();
        assert!(self.free() < 64 * 1024, "the disk is full: {} bytes free", self.free());
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

const TEMPLATE: &str = "app: spa
hostnames:
- web: web-${env_id}.${domain}
services:
- name: web
  static: true
  build_base: front-end
  build_command: sh build.sh
  build_output_directory: dist/
";

/// A build whose output is `size` MiB of random bytes and a page.
fn build_sh(size: u32) -> String {
    format!(
        "set -e\nmkdir -p dist\ndd if=/dev/urandom of=dist/big.bin bs=1048576 count={size} 2>/dev/null\necho '<p>built {size}</p>' > dist/index.html\n"
    )
}

fn show(s: &Server, id: &str) -> serde_json::Value {
    s.json(&["env", "show", id])
}

#[test]
fn a_full_disk_fails_a_static_build_and_a_store_write_with_the_reason_and_loses_nothing() {
    let disk = SmallDisk::new(48);
    let repo = repo(TEMPLATE, None, &[("front-end/build.sh", &build_sh(64))], &[]);
    let s = Server::start(&disk.path().join("data"), None);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    s.json(&["app", "set", "spa", "--static-builder", "busybox:stable"]);
    let free_before = disk.free();

    // A static build larger than the disk: the deployment fails, saying why.
    let o = s.cli(&["env", "create", "spa", "--branch", "main", "--wait", "--output", "json"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let id = eventually(10, "the environment's id", || {
        s.json(&["env", "list"]).as_array().and_then(|a| a.first()).and_then(|e| e["id"].as_str()).map(str::to_owned)
    });
    let env = eventually(120, "the deployment ends", || {
        let e = show(&s, &id);
        (e["status"] != "creating" && e["status"] != "deploying").then_some(e)
    });
    assert_eq!(env["status"], "failed", "{env}\n{out}");
    let web = env["services"].as_array().and_then(|v| v.iter().find(|x| x["name"] == "web")).cloned().expect("web");
    let reason = format!("{} {}", env["reason"], web["reason"]);
    assert!(reason.to_lowercase().contains("no space left"), "the reason names the full disk: {reason}");
    // Nothing of the failed build stays: the space it took is free again.
    let free_after = disk.free();
    assert!(
        free_before.abs_diff(free_after) < 4 * 1024 * 1024,
        "{free_before} bytes free before, {free_after} after: the build left files"
    );
    assert!(std::fs::read_dir(disk.path().join("data/tmp")).map_or(true, |mut d| d.next().is_none()), "temporary files stay");

    // The disk filled to the last byte: what writes to the store fails with the reason, the
    // server keeps answering, and what is stored stays readable.
    let filler = disk.fill();
    let o = s.cli(&["env", "deploy", &id]);
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!o.status.success(), "a deployment was started on a full disk: {said}");
    assert!(said.to_lowercase().contains("full") || said.to_lowercase().contains("space"), "the error says the disk is full: {said}");
    assert_eq!(show(&s, &id)["status"], "failed", "reads still answer");
    assert!(http(s.api, "localhost", "/healthz").is_some(), "the server answers");

    // Room again, and a smaller build: without a restart, the environment deploys and is served.
    std::fs::remove_file(&filler).expect("remove the filler");
    std::fs::write(repo.path().join("front-end/build.sh"), build_sh(1)).expect("write");
    git(repo.path(), &["commit", "-qam", "a smaller build"]);
    let o = s.cli(&["env", "deploy", &id, "--wait"]);
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(show(&s, &id)["status"], "ready");
    let (status, _, body) = fetch(s.router, "GET", &format!("web-{id}.localhost"), "/", &[]);
    assert_eq!((status, String::from_utf8_lossy(&body).trim()), (200, "<p>built 1</p>"));
    s.json(&["env", "delete", &id, "--wait"]);
    assert!(s.json(&["env", "list"]).as_array().is_some_and(Vec::is_empty));
    drop(s);
}
