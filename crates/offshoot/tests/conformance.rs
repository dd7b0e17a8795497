//! The conformance scenarios of `offshoot_control::conformance`, played on the Docker engine
//! through a real server: the hermetic tests play the same ones on the fake engine, so both are
//! held to one behaviour (which steps ran, how each ended, whether the environment is ready, what
//! the reason says).

mod support;

use support::*;

#[test]
fn every_conformance_scenario_plays_the_same_on_the_docker_engine() {
    let s = Server::new(None);
    let envs = play_conformance(&s, "conf");
    for id in &envs {
        assert_eq!(s.json(&["env", "delete", id, "--wait"])["status"], "deleted");
        assert_eq!(leftovers(id), "", "nothing of {id} is left");
    }
}
