//! `cke`: thin wrapper around [`cke::daemon::main_impl`].

fn main() {
    std::process::exit(cke::daemon::main_impl());
}
