//! The conformance scenarios of `offshoot_control::conformance`, played on the Docker engine
//! through a real server: the hermetic tests play the same ones on the fake engine, so both are
//! held to one behaviour (which steps ran, how each ended, whether the environment is ready, what
//! the reason says).

mod support;

use offshoot_control::conformance::scenarios;
use support::*;

#[test]
fn every_conformance_scenario_plays_the_same_on_the_docker_engine() {
    let s = Server::new(None);
    let all = scenarios();
    assert!(all.len() >= 7);
    let mut envs = Vec::new();
    // All at once: each is its own application and environment.
    let repos: Vec<_> = all.iter().enumerate().map(|(i, sc)| repo(&format!("app: conf{i}\n{}", sc.template), None, &[], &[])).collect();
    for (i, r) in repos.iter().enumerate() {
        s.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
        let env = s.json(&["env", "create", &format!("conf{i}"), "--branch", "main"]);
        envs.push(env["id"].as_str().expect("id").to_owned());
    }
    for (sc, id) in all.iter().zip(&envs) {
        let env = eventually(120, &format!("{}: the environment to settle", sc.name), || {
            let e = s.json(&["env", "show", id]);
            matches!(e["status"].as_str(), Some("ready" | "failed")).then_some(e)
        });
        assert_eq!(env["status"] == "ready", sc.ready, "{}: {env}", sc.name);
        let steps: Vec<(String, String)> = env["deployments"][0]["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|st| (st["name"].as_str().unwrap_or("").to_owned(), st["status"].as_str().unwrap_or("").to_owned()))
            .collect();
        let want: Vec<(String, String)> = sc.steps.iter().map(|(n, st)| ((*n).to_owned(), st.as_str().to_owned())).collect();
        assert_eq!(steps, want, "{}: {env}", sc.name);
        let reason = env["reason"].as_str().unwrap_or("");
        for w in sc.reason_has {
            assert!(reason.contains(w), "{}: the reason `{reason}` does not say `{w}`", sc.name);
        }
    }
    for id in &envs {
        assert_eq!(s.json(&["env", "delete", id, "--wait"])["status"], "deleted");
        assert_eq!(leftovers(id), "", "nothing of {id} is left");
    }
}
