//! The three binaries print a failure the same way, through `cke::error::print_error`:
//! `program: error` on the first line of standard error, each further cause on its own
//! `  caused by: ...` line, and exit non-zero.

use std::process::{Command, Output};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The lines `program` printed, checked for the shared shape.
#[track_caller]
fn report(program: &str, o: &Output) -> Vec<String> {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    let text = stderr(o);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with(&format!("{program}: "))),
        "{text}"
    );
    assert!(lines[1..].iter().all(|l| l.starts_with("  caused by: ")), "{text}");
    lines
}

#[test]
fn cke_ckecli_and_rivers_print_errors_alike() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    // Nothing listens on port 1: the management etcd is unreachable.
    std::fs::write(&config, "endpoints: [\"http://127.0.0.1:1\"]\ntimeout: 2s\n").unwrap();

    let o = Command::new(env!("CARGO_BIN_EXE_rivers"))
        .args(["--listen", &addr, "--upstreams", "127.0.0.1:1", "--loglevel=error"])
        .output()
        .unwrap();
    let lines = report("rivers", &o);
    assert_eq!(lines[0], format!("rivers: cannot listen on {addr}"));
    assert!(lines.len() == 2 && lines[1].contains("in use"), "{lines:?}");

    let o = Command::new(env!("CARGO_BIN_EXE_ckecli"))
        .arg("--config")
        .arg(&config)
        .args(["cluster", "get"])
        .env("CKECLI_LOG", "off")
        .output()
        .unwrap();
    let lines = report("ckecli", &o);
    assert!(lines[0].contains("management etcd at http://127.0.0.1:1"), "{lines:?}");
    assert!(lines.len() >= 2, "the cause is printed: {lines:?}");

    let o = Command::new(env!("CARGO_BIN_EXE_cke"))
        .arg("--config")
        .arg(&config)
        .args(["--http", &addr])
        .env("CKE_LOG", "off")
        .output()
        .unwrap();
    let lines = report("cke", &o);
    assert!(
        lines[0].starts_with(&format!("cke: cannot listen on {addr}")) && lines[0].contains("in use"),
        "{lines:?}"
    );
}
