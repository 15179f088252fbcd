//! `cke`: thin wrapper around [`cke::daemon::main_impl`].

fn main() -> std::process::ExitCode {
    cke::daemon::main_impl()
}
