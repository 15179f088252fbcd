//! `ckecli`: thin wrapper around [`cke::cli::main_impl`].

fn main() -> std::process::ExitCode {
    cke::cli::main_impl()
}
