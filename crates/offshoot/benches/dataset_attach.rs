//! Instant Datasets: how long an environment waits for its database when a clone is checked out
//! of the pool, beside restoring the same dataset with `pg_restore` (what a user would otherwise
//! do per environment), at 100 MB and 1 GB, side by side in one run on this machine's PostgreSQL.
//!
//! - attach: the deployment's `datasets` phase, measured by the server (the environment's
//!   configuration read, the checkout, the clone's credentials decrypted), median of ROUNDS
//!   environments, each created with the pool full (steady state);
//! - pg_restore: `pg_restore -j 2 --no-owner --no-acl` of a `pg_dump -Fc` file into a new
//!   database (2 jobs: this machine has 2 cores), median of RESTORES runs;
//! - also: the snapshot (`dataset create` to its first snapshot) and the refill of one clone
//!   (a checkout to the pool full again), which happen ahead of time.
//!
//! Run: `cargo bench -p offshoot --bench dataset_attach` (needs `bash scripts/services`; about
//! 10 minutes and 6 GB of disk). `DATASET_SIZES_MB=100` limits the sizes.

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{Server, eventually, free_port, median, psql, repo};

const ROUNDS: usize = 9;
const RESTORES: usize = 3;

fn run(cmd: &mut Command) {
    let o = cmd.env("PGPASSWORD", "offshoot").output().expect("run");
    assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A database of about `mb` megabytes: rows of 1 kB of text, a primary key and an index.
fn make_source(name: &str, mb: u64) -> u64 {
    psql("postgres", &format!("CREATE DATABASE {name}"));
    psql(
        name,
        &format!(
            "CREATE TABLE events (id bigint PRIMARY KEY, kind text NOT NULL, body text NOT NULL);
             INSERT INTO events SELECT g, md5((g % 97)::text), repeat(md5(g::text), 28) FROM generate_series(1, {}) g;
             CREATE INDEX events_kind ON events (kind);",
            mb * 900
        ),
    );
    psql(name, "VACUUM ANALYZE events");
    psql("postgres", &format!("SELECT pg_database_size('{name}')")).parse().expect("size")
}

fn pool(s: &Server, ready: u64) {
    eventually(600, "the pool to be full", || {
        let d = s.json(&["dataset", "show", "data"]);
        (d["pool"]["ready"] == ready && d["pool"]["filling"] == 0).then_some(())
    });
}

fn main() {
    let sizes: Vec<u64> = std::env::var("DATASET_SIZES_MB")
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|_| vec![100, 1000]);
    let template = "app: bench\nenvironment_templates:\n- name: ephemeral\n  datasets:\n  - name: data\nservices:\n- name: web\n  image: busybox:stable\n  command: [sh, -c, 'exec sleep 3600']\n";
    let r = repo(template, None, &[], &[]);
    println!("Instant Datasets: attach from the pool vs pg_restore (medians)");
    let mut rows = Vec::new();
    for mb in sizes {
        let src = format!("bench_src_{}_{}", std::process::id(), free_port());
        let t = Instant::now();
        let bytes = make_source(&src, mb);
        println!("\n{mb} MB dataset: {:.0} MB on disk, made in {:.0} s", bytes as f64 / 1e6, t.elapsed().as_secs_f64());

        // What a user would otherwise do for each environment.
        let dump = tempfile::NamedTempFile::new().expect("dump file");
        let t = Instant::now();
        run(Command::new("pg_dump").args(["-h", "127.0.0.1", "-U", "offshoot", "-Fc", "-f"]).arg(dump.path()).arg(&src));
        println!("  pg_dump -Fc: {:.1} s", t.elapsed().as_secs_f64());
        let mut restores = Vec::new();
        for i in 0..RESTORES {
            let target = format!("{src}_r{i}");
            psql("postgres", &format!("CREATE DATABASE {target}"));
            let t = Instant::now();
            run(Command::new("pg_restore")
                .args(["-h", "127.0.0.1", "-U", "offshoot", "-j", "2", "--no-owner", "--no-acl", "-d", &target])
                .arg(dump.path()));
            restores.push(t.elapsed().as_secs_f64());
            psql("postgres", &format!("DROP DATABASE {target}"));
        }
        let restore = median(restores.clone());
        println!("  pg_restore -j 2: median {restore:.2} s  (runs: {restores:.2?})");

        // Offshoot: the snapshot and the pool are made ahead of time; an environment checks out.
        let s = Server::new_with(None, &["--dataset-wait", "900"]);
        s.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
        let t = Instant::now();
        let d = s.json(&[
            "dataset",
            "create",
            "data",
            "--source",
            &format!("postgres://offshoot:offshoot@127.0.0.1:5432/{src}"),
            "--pool-size",
            "2",
        ]);
        assert_eq!(d["state"], "ready", "{d}");
        let snapshot = t.elapsed().as_secs_f64();
        pool(&s, 2);
        println!("  offshoot snapshot (pg_dump | pg_restore into a template): {snapshot:.1} s");
        let mut attach = Vec::new();
        let mut refills = Vec::new();
        for _ in 0..ROUNDS {
            let env = s.json(&["env", "create", "bench", "--branch", "main", "--wait"]);
            assert_eq!(env["status"], "ready", "{env}");
            attach.push(env["deployments"][0]["phases"]["datasets_us"].as_f64().expect("datasets phase") / 1000.0);
            pool(&s, 2);
            let fill = s.json(&["dataset", "show", "data"])["fill_ms"].as_f64().expect("fill time");
            refills.push(fill / 1000.0);
            let id = env["id"].as_str().expect("id").to_owned();
            assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
            std::thread::sleep(Duration::from_millis(200));
        }
        let a = median(attach.clone());
        let refill = median(refills);
        println!("  offshoot attach: median {a:.2} ms  (runs: {attach:.2?} ms)");
        println!("  offshoot making one clone (CREATE DATABASE ... TEMPLATE, ahead of time): median {refill:.2} s");
        println!("  ratio: pg_restore / attach = {:.0}x", restore * 1000.0 / a);
        rows.push((mb, a, restore, snapshot, refill));
        assert!(s.cli(&["dataset", "delete", "data"]).status.success());
        eventually(120, "the dataset to be deleted", || s.json(&["dataset", "list"]).as_array().is_some_and(Vec::is_empty).then_some(()));
        drop(s);
        psql("postgres", &format!("DROP DATABASE {src} WITH (FORCE)"));
    }
    println!("\nsize     attach (median)   pg_restore -j 2 (median)   ratio   snapshot   one clone");
    for (mb, a, restore, snapshot, refill) in rows {
        println!(
            "{:<8} {:>10.2} ms {:>20.2} s {:>12.0}x {:>8.1} s {:>10.2} s",
            format!("{mb} MB"),
            a,
            restore,
            restore * 1000.0 / a,
            snapshot,
            refill
        );
    }
}
