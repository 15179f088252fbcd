//! `ckecli ssh`, `scp` and `ssh-hostkey` against mtest nodes, with the key in OpenBao and host keys
//! pinned in etcd.

use std::process::Output;

use cke_testkit::{require_root, Mtest};

fn ckecli(m: &Mtest, args: &[&str]) -> Output {
    m.ckecli(env!("CARGO_BIN_EXE_ckecli")).run(args, None)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn ssh_scp_and_pinned_host_keys() {
    require_root("mtest");
    let m = Mtest::up(2, &[]);
    let (n1, n2) = (m.node(1), m.node(2));
    let dir = tempfile::tempdir().unwrap();
    let cluster = format!(
        "name: t\nservice_subnet: 10.96.0.0/16\nnodes:\n  - {{address: {n1}, hostname: node1, user: root, control_plane: true}}\n  - {{address: {n2}, user: root}}\n"
    );
    std::fs::write(dir.path().join("c.yml"), cluster).unwrap();
    assert!(
        ckecli(&m, &["cluster", "set", dir.path().join("c.yml").to_str().unwrap()])
            .status
            .success()
    );
    assert!(ckecli(&m, &["vault", "init"]).status.success());
    assert!(ckecli(&m, &["vault", "ssh-privkey", m.ssh_key().to_str().unwrap()])
        .status
        .success());

    // Not pinned yet: refused with advice.
    let o = ckecli(&m, &["ssh", &n1, "true"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("ssh-hostkey scan"), "{}", text(&o));

    let o = ckecli(&m, &["ssh-hostkey", "scan", &n1, &n2]);
    assert!(o.status.success(), "{}", text(&o));
    let list = text(&ckecli(&m, &["ssh-hostkey", "list"]));
    assert!(
        list.contains(&format!("{n1} ssh-ed25519 ")) && list.contains(&format!("{n2} ssh-ed25519 ")),
        "{list}"
    );

    // Commands by address and by host name; exit codes pass through.
    let o = ckecli(&m, &["ssh", "node1", "--", "ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&n1));
    assert_eq!(
        ckecli(&m, &["ssh", &format!("root@{n2}"), "exit 7"]).status.code(),
        Some(7)
    );

    // scp both ways.
    let local = dir.path().join("f");
    std::fs::write(&local, "payload\n").unwrap();
    let o = ckecli(
        &m,
        &["scp", local.to_str().unwrap(), &format!("{n2}:/etc/kubernetes/f")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let back = dir.path().join("back");
    assert!(
        ckecli(&m, &["scp", &format!("{n2}:/etc/kubernetes/f"), back.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(std::fs::read_to_string(back).unwrap(), "payload\n");

    // A changed host key is refused.
    assert!(m.run(&["rekey", "2"]).status.success());
    let o = ckecli(&m, &["ssh", &n2, "true"]);
    assert!(!o.status.success());
    assert!(text(&o).to_lowercase().contains("host key"), "{}", text(&o));

    // Bad input: exit 2, nothing changed; delete works.
    assert_eq!(
        ckecli(&m, &["ssh-hostkey", "set", &n1, "ssh-ed25519 notbase64!"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        ckecli(&m, &["ssh-hostkey", "set", "node1", "ssh-ed25519 AAAA"])
            .status
            .code(),
        Some(2)
    );
    assert!(text(&ckecli(&m, &["ssh-hostkey", "list"])).contains(&n1));
    assert!(ckecli(&m, &["ssh-hostkey", "delete", &n1]).status.success());
    assert_eq!(ckecli(&m, &["ssh-hostkey", "delete", &n1]).status.code(), Some(1));
    assert!(!text(&ckecli(&m, &["ssh-hostkey", "list"])).contains(&format!("{n1} ")));
}
