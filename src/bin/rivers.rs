//! `rivers`: a small TCP load balancer (see docs/rivers.md).
use clap::Parser;

fn main() -> std::process::ExitCode {
    cke::rivers::main_impl(cke::rivers::Args::parse())
}
