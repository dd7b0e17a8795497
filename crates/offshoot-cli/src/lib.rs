//! The command layer: parses arguments, reads files, prints results. Errors are `anyhow` with
//! action-phrased context; `main` prints the chain and any hint and picks the exit code.

mod files;
mod template_cmd;
mod validate_cmd;

use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write as _;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "offshoot", version, about = "Every git branch its own running environment, from Release's configuration files.")]
pub struct Cli {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check an Application Template, Environment Variables file, `.release.yaml`, or a whole
    /// repository; report every problem with file, line and column.
    Validate(validate_cmd::Args),
    /// Generate and resolve templates.
    #[command(subcommand)]
    Template(template_cmd::Command),
}

/// Runs the CLI and returns the process exit code: 0 success, 1 failure, 2 usage error.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let result = match cli.command {
        Command::Validate(args) => validate_cmd::run(args, cli.output),
        Command::Template(cmd) => template_cmd::run(cmd, cli.output),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            report_error(&e);
            ExitCode::from(if e.downcast_ref::<UsageError>().is_some() { 2 } else { 1 })
        }
    }
}

/// An error in how the command was called (exit code 2).
#[derive(Debug)]
pub(crate) struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A suggestion shown under an error.
#[derive(Debug)]
pub(crate) struct Hint(pub String);

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Hint {}

fn report_error(e: &anyhow::Error) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {e}");
    let mut hint = None;
    for cause in e.chain().skip(1) {
        if let Some(h) = cause.downcast_ref::<Hint>() {
            hint = Some(h.0.clone());
            continue;
        }
        let _ = writeln!(err, "  caused by: {cause}");
    }
    if let Some(h) = hint.or_else(|| e.downcast_ref::<Hint>().map(|h| h.0.clone())) {
        let _ = writeln!(err, "  hint: {h}");
    }
}

/// Writes to stdout, ignoring a closed pipe (`offshoot ... | head`).
pub(crate) fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
}

pub(crate) fn err(s: &str) {
    let mut o = std::io::stderr().lock();
    let _ = o.write_all(s.as_bytes());
}
