//! Time from `offshoot env create --wait` to ready for the example shop, images cached, side by
//! side in one run with `docker-compose up -d` plus waiting for healthy on the same app
//! (`examples/shop/docker-compose.yml`; Debian's docker-compose). Medians of ROUNDS runs each.
//!
//! With `OFFSHOOT_BEFORE_BIN=/path/to/an/older/offshoot`, that build runs too, in the same rounds,
//! on its own server: the figure before a change beside the one after it.
//!
//! Run: `cargo bench -p offshoot` (needs `bash scripts/services` and `apt-get install docker-compose`).

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::{Server, docker, median, shop_repo};

const ROUNDS: usize = 5;

fn offshoot_round(s: &Server) -> f64 {
    let start = Instant::now();
    let env = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    let took = start.elapsed().as_secs_f64();
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id").to_owned();
    assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
    took
}

fn compose(dir: &std::path::Path, project: &str, args: &[&str]) -> bool {
    Command::new("docker-compose").args(["-p", project]).args(args).current_dir(dir).output().map(|o| o.status.success()).unwrap_or(false)
}

fn compose_round(dir: &std::path::Path, project: &str) -> f64 {
    let start = Instant::now();
    assert!(compose(dir, project, &["up", "-d"]), "docker-compose up failed");
    let web = format!("{project}_web_1");
    let deadline = Instant::now() + Duration::from_secs(120);
    while docker(&["inspect", "--format", "{{.State.Health.Status}}", &web]).trim() != "healthy" {
        assert!(Instant::now() < deadline, "compose's web never became healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = start.elapsed().as_secs_f64();
    assert!(compose(dir, project, &["down", "-v"]), "docker-compose down failed");
    took
}

fn main() {
    let repo = shop_repo(|t| t);
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let before = std::env::var("OFFSHOOT_BEFORE_BIN").ok().map(|bin| {
        let b = Server::new_bin(&bin);
        b.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
        offshoot_round(&b);
        b
    });
    let has_compose = Command::new("docker-compose").arg("version").output().is_ok_and(|o| o.status.success());

    // Warm-up: build and cache every image on both sides.
    offshoot_round(&s);
    let project = format!("offshootbench{}", std::process::id());
    if has_compose {
        assert!(compose(repo.path(), &project, &["build", "-q"]), "docker-compose build failed");
        compose_round(repo.path(), &project);
    }
    let (mut ours, mut theirs, mut older) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(offshoot_round(&s));
        if let Some(b) = &before {
            older.push(offshoot_round(b));
        }
        if has_compose {
            theirs.push(compose_round(repo.path(), &project));
        }
    }
    let o = median(ours.clone());
    println!(
        "offshoot env create --wait (3 services, an init container, a job, probes, routing): median {o:.2} s over {ROUNDS} runs {ours:.2?}"
    );
    if before.is_some() {
        let b = median(older.clone());
        println!(
            "the same, built before the change:                                         median {b:.2} s over {ROUNDS} runs {older:.2?}"
        );
        println!("ratio after / before: {:.2} (below 1 is faster)", o / b);
    }
    if has_compose {
        let c = median(theirs.clone());
        println!(
            "docker-compose up -d + healthy (same app):                                 median {c:.2} s over {ROUNDS} runs {theirs:.2?}"
        );
        println!("ratio offshoot / compose: {:.2} (below 1 is faster)", o / c);
    } else {
        println!("docker-compose not installed (apt-get install docker-compose): no side-by-side figure");
    }
}
