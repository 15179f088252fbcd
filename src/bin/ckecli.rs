//! `ckecli`: thin wrapper around [`cke::cli::main_impl`].

fn main() {
    std::process::exit(cke::cli::main_impl());
}
