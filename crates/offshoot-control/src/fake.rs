//! An engine in memory, for tests of the control plane that run in seconds: it records what it
//! was asked, in order, and fails, waits or hangs where a test tells it to.

use crate::backend::{Backend, BackendError, ExecOutput, ServiceState};
use offshoot_template::resolve::Resolved;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What a test can see of the fake engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeState {
    /// Every call, as `prepare`, `finish`, `remove_environment` or the task (`services.api`,
    /// `jobs.migrate`), in the order they began.
    pub calls: Vec<String>,
    /// Tasks that ended, in order.
    pub ended: Vec<String>,
    /// Services running now, with how many times each was (re)started.
    pub running: BTreeMap<String, u32>,
    /// Services stopped (kept, to start again).
    pub stopped: BTreeSet<String>,
    /// The most tasks ever in flight at once.
    pub max_in_flight: usize,
    in_flight: usize,
}

#[derive(Default)]
struct Script {
    fail: BTreeMap<String, String>,
    delay: BTreeMap<String, Duration>,
    hang: BTreeSet<String>,
    crash: Option<Crash>,
}

/// A kill -9 of the server at a numbered point, shared by the fake engines of a test: the
/// points are the beginning of each call and the end of each call's effect (a container
/// stopped, but its caller not yet told). At the chosen point the call never returns and
/// [`Crash::fired`] wakes, so the test drops the operation there, as a killed process would
/// leave it.
#[derive(Clone)]
pub struct Crash {
    inner: Arc<CrashInner>,
}

struct CrashInner {
    at: std::sync::atomic::AtomicUsize,
    passed: std::sync::atomic::AtomicUsize,
    fired: tokio::sync::Notify,
}

impl Crash {
    /// Crashes at point `n` (from 0).
    pub fn at(n: usize) -> Self {
        use std::sync::atomic::AtomicUsize;
        let inner = CrashInner { at: AtomicUsize::new(n), passed: AtomicUsize::new(0), fired: tokio::sync::Notify::new() };
        Crash { inner: Arc::new(inner) }
    }

    /// Never crashes: counts the points a run passes.
    pub fn never() -> Self {
        Self::at(usize::MAX)
    }

    /// How many points were passed.
    pub fn passed(&self) -> usize {
        self.inner.passed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// No crash from now on (the restarted server).
    pub fn disarm(&self) {
        self.inner.at.store(usize::MAX, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits until the crash happened.
    pub async fn fired(&self) {
        self.inner.fired.notified().await;
    }

    async fn point(&self) {
        use std::sync::atomic::Ordering;
        let n = self.inner.passed.fetch_add(1, Ordering::SeqCst);
        if n == self.inner.at.load(Ordering::SeqCst) {
            self.inner.fired.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

/// A [`Backend`] in memory. Cheap to clone: clones share their state.
#[derive(Clone, Default)]
pub struct FakeBackend {
    state: Arc<Mutex<FakeState>>,
    script: Arc<Mutex<Script>>,
    started: Arc<tokio::sync::Notify>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fake engine that plays a resolved environment as a real one would, for the
    /// [conformance](crate::conformance) scenarios: a service or job whose command runs
    /// `exit N` (N not 0) fails with `exited with code N`; everything else succeeds.
    pub fn scripted(r: &Resolved) -> Self {
        let fake = FakeBackend::new();
        for s in &r.services {
            if let Some(code) = exit_code(s.command.iter().chain(s.args.iter()).flatten()) {
                fake.fail(&format!("services.{}", s.name), &format!("the container exited with code {code}"));
            }
        }
        for j in &r.jobs {
            if let Some(code) = exit_code(j.command.iter().chain(j.args.iter()).flatten()) {
                fake.fail(&format!("jobs.{}", j.name), &format!("job `{}` exited with code {code}", j.name));
            }
        }
        fake
    }

    /// `call` (a task such as `services.api`, or `prepare`/`finish`) fails with `message`.
    pub fn fail(&self, call: &str, message: &str) -> &Self {
        lock(&self.script).fail.insert(call.to_owned(), message.to_owned());
        self
    }

    /// `call` succeeds from now on.
    pub fn heal(&self, call: &str) -> &Self {
        lock(&self.script).fail.remove(call);
        self
    }

    /// `call` takes `d`.
    pub fn delay(&self, call: &str, d: Duration) -> &Self {
        lock(&self.script).delay.insert(call.to_owned(), d);
        self
    }

    /// `call` begins and never ends (an engine that stopped answering, or a crash mid-task).
    pub fn hang(&self, call: &str) -> &Self {
        lock(&self.script).hang.insert(call.to_owned());
        self
    }

    /// Lets `call` end again.
    pub fn unhang(&self, call: &str) -> &Self {
        lock(&self.script).hang.remove(call);
        self
    }

    /// Crashes at `crash`'s point (see [`Crash`]).
    pub fn crash(&self, crash: &Crash) -> &Self {
        lock(&self.script).crash = Some(crash.clone());
        self
    }

    async fn point(&self) {
        let crash = lock(&self.script).crash.clone();
        if let Some(c) = crash {
            c.point().await;
        }
    }

    /// Waits until some call begins.
    pub async fn call_began(&self) {
        self.started.notified().await;
    }

    pub fn state(&self) -> FakeState {
        lock(&self.state).clone()
    }

    /// How many times `call` began.
    pub fn count(&self, call: &str) -> usize {
        lock(&self.state).calls.iter().filter(|c| *c == call).count()
    }

    async fn call(&self, call: &str) -> Result<(), BackendError> {
        self.point().await;
        {
            let mut st = lock(&self.state);
            st.calls.push(call.to_owned());
            st.in_flight += 1;
            st.max_in_flight = st.max_in_flight.max(st.in_flight);
        }
        self.started.notify_waiters();
        let (delay, hang, fail) = {
            let s = lock(&self.script);
            (s.delay.get(call).copied(), s.hang.contains(call), s.fail.get(call).cloned())
        };
        if hang {
            std::future::pending::<()>().await;
        }
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut st = lock(&self.state);
        st.in_flight -= 1;
        st.ended.push(call.to_owned());
        match fail {
            Some(message) => Err(BackendError::new(message)),
            None => Ok(()),
        }
    }
}

/// The code of the first `exit N` with N not 0 in a command.
fn exit_code<'a>(words: impl Iterator<Item = &'a String>) -> Option<u32> {
    for w in words {
        let mut rest = w.as_str();
        while let Some(i) = rest.find("exit ") {
            rest = &rest[i + "exit ".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(code) = digits.parse::<u32>()
                && code != 0
            {
                return Some(code);
            }
        }
    }
    None
}

impl Backend for FakeBackend {
    async fn prepare(&self) -> Result<(), BackendError> {
        self.call("prepare").await
    }

    async fn start_service(&self, service: &str) -> Result<(), BackendError> {
        self.call(&format!("services.{service}")).await?;
        let mut st = lock(&self.state);
        *st.running.entry(service.to_owned()).or_insert(0) += 1;
        st.stopped.remove(service);
        Ok(())
    }

    async fn run_job(&self, job: &str) -> Result<String, BackendError> {
        self.call(&format!("jobs.{job}")).await?;
        Ok(format!("job {job} ran"))
    }

    async fn infrastructure(&self, name: &str, destroy: bool) -> Result<String, BackendError> {
        let action = if destroy { "destroy" } else { "apply" };
        self.call(&format!("infrastructure.{name}:{action}")).await?;
        Ok(format!("{name} {action}ed"))
    }

    async fn remove_environment(&self) -> Result<(), BackendError> {
        self.call("release.remove_environment").await?;
        let mut st = lock(&self.state);
        st.running.clear();
        st.stopped.clear();
        Ok(())
    }

    async fn finish(&self) -> Result<(), BackendError> {
        self.call("finish").await
    }

    async fn observe(&self) -> Result<Vec<ServiceState>, BackendError> {
        let st = lock(&self.state);
        let running = st.running.keys().map(|s| ServiceState { service: s.clone(), running: !st.stopped.contains(s) });
        Ok(running.collect())
    }

    async fn logs(&self, service: Option<&str>, _tail: usize) -> Result<Vec<(String, String)>, BackendError> {
        let st = lock(&self.state);
        let out: Vec<(String, String)> = st
            .running
            .iter()
            .filter(|(s, _)| service.is_none_or(|w| w == *s))
            .map(|(s, n)| (s.clone(), format!("{s} started {n} time(s)\n")))
            .collect();
        match service {
            Some(s) if out.is_empty() => Err(BackendError::not_found(format!("service `{s}` does not run"))),
            _ => Ok(out),
        }
    }

    async fn exec(&self, service: &str, command: &[String]) -> Result<ExecOutput, BackendError> {
        self.call(&format!("exec.{service}")).await?;
        let st = lock(&self.state);
        if !st.running.contains_key(service) || st.stopped.contains(service) {
            return Err(BackendError::not_found(format!("service `{service}` does not run")));
        }
        Ok(ExecOutput { exit_code: 0, output: format!("{}\n", command.join(" ")) })
    }

    async fn stop_service(&self, service: &str) -> Result<(), BackendError> {
        self.call(&format!("stop.{service}")).await?;
        {
            let mut st = lock(&self.state);
            if !st.running.contains_key(service) {
                return Err(BackendError::not_found(format!("service `{service}` does not run")));
            }
            st.stopped.insert(service.to_owned());
        }
        self.point().await;
        Ok(())
    }

    async fn resume_service(&self, service: &str) -> Result<(), BackendError> {
        self.call(&format!("resume.{service}")).await?;
        {
            let mut st = lock(&self.state);
            if !st.running.contains_key(service) {
                return Err(BackendError::not_found(format!("service `{service}` does not run")));
            }
            st.stopped.remove(service);
        }
        self.point().await;
        Ok(())
    }
}
