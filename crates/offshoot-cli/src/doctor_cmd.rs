//! `offshoot doctor`: its arguments and how its report is printed. The checks themselves probe
//! the engine, the database and the network, so they run in the binary (`offshoot-doctor`),
//! which this crate does not depend on.

use crate::{Output, emit};
use offshoot_api_types::DoctorReport;
use std::fmt::Write as _;
use std::process::ExitCode;

/// Arguments of `offshoot doctor`: the server's own, so that it checks what that server would
/// use.
#[derive(clap::Args, Clone, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub base: crate::ServerBase,
    /// An image the applications build on or run, checked present in the engine. Repeat for
    /// several.
    #[arg(long = "image", value_name = "IMAGE", default_values = ["busybox:stable"])]
    pub images: Vec<String>,
}

/// Prints the report; exit code 1 when a check failed.
pub fn report(report: &DoctorReport, json: bool) -> ExitCode {
    emit(report, if json { Output::Json } else { Output::Human }, human);
    if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn human(report: &DoctorReport) -> String {
    let width = report.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut s = String::new();
    for c in &report.checks {
        let mark = match (c.ok, c.fix.is_some()) {
            (false, _) => "FAIL",
            (true, true) => "warn",
            (true, false) => "ok",
        };
        let _ = writeln!(s, "{mark:<4}  {:<width$}  {}", c.name, c.detail);
        if let Some(fix) = &c.fix {
            let _ = writeln!(s, "      {:<width$}  {}: {fix}", "", if c.ok { "advice" } else { "fix" });
        }
    }
    let failed = report.checks.iter().filter(|c| !c.ok).count();
    match failed {
        0 => s.push_str("\nthis machine can run `offshoot server`\n"),
        n => {
            let _ =
                writeln!(s, "\n{n} check{} failed: apply the fix shown, then run `offshoot doctor` again", if n == 1 { "" } else { "s" });
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use offshoot_api_types::DoctorCheck;

    fn check(name: &str, ok: bool, fix: Option<&str>) -> DoctorCheck {
        DoctorCheck { name: name.into(), ok, detail: format!("{name} detail"), fix: fix.map(Into::into) }
    }

    #[test]
    fn failures_warnings_and_passes_are_told_apart() {
        let r = DoctorReport {
            checks: vec![check("engine", true, None), check("domain", true, Some("use curl")), check("api-port", false, Some("stop it"))],
        };
        let text = human(&r);
        assert!(text.contains("ok    engine    engine detail\n"), "{text}");
        assert!(text.contains("warn  domain    domain detail\n"), "{text}");
        assert!(text.contains("advice: use curl"), "{text}");
        assert!(text.contains("FAIL  api-port  api-port detail\n"), "{text}");
        assert!(text.contains("fix: stop it"), "{text}");
        assert!(text.contains("1 check failed"), "{text}");
        assert!(!r.ok());
        let r = DoctorReport { checks: vec![check("engine", true, None), check("domain", true, Some("use curl"))] };
        assert!(r.ok());
        assert!(human(&r).contains("can run `offshoot server`"));
    }
}
