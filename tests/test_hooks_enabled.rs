//! The daemon suites (`daemon_ha`, `e2e_etcd_maintain`) need the `test-hooks` feature and are not
//! built without it. This test fails loudly instead of letting a plain `cargo test` pass without
//! them: run `make test`, or `cargo test --features test-hooks`.

#[test]
#[allow(clippy::assertions_on_constants)]
fn the_test_hooks_feature_is_on() {
    assert!(
        cfg!(feature = "test-hooks"),
        "built without the test-hooks feature: the daemon suites were left out; run `make test` or `cargo test --features test-hooks`"
    );
}
