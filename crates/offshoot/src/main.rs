//! The `offshoot` binary: parses arguments and hands over to the command layer.

fn main() -> std::process::ExitCode {
    offshoot_cli::main()
}
