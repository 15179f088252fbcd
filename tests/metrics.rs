//! The metrics exposition: every metric of `cke` and of `rivers`, made to have a series, is parsed
//! with a Prometheus text-format parser (openmetrics-parser, through `cke_testkit::exposition`):
//! every family has HELP and TYPE, every histogram its buckets, sum and count; and the families are
//! exactly the ones docs/metrics.md lists, with the same types and labels.

use std::collections::BTreeSet;
use std::time::Duration;

use cke::metrics::{process, Metrics};
use cke::model::Phase;
use cke_testkit::exposition::{check, documented, Family};

fn docs() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap()
}

/// The exposed families with `prefix`, as (name, type, labels).
fn exposed(families: &[Family], prefix: &str) -> Vec<(String, String, BTreeSet<String>)> {
    let mut v: Vec<_> = families
        .iter()
        .filter(|f| f.name.starts_with(prefix))
        .map(|f| (f.name.clone(), f.kind.clone(), f.labels.clone()))
        .collect();
    v.sort();
    v
}

#[test]
fn every_cke_metric_parses_and_is_documented() {
    let m = Metrics::default();
    m.set_leader(true);
    m.set_phase(Phase::EtcdBoot, 1_700_000_000);
    m.operation("etcd-bootstrap", "completed");
    m.operation_duration("etcd-bootstrap", Duration::from_secs(3));
    m.command("run-container", "failed");
    m.pass();
    m.pass_failed();
    m.pass_duration(Duration::from_millis(1500));
    m.probe_duration(Duration::from_millis(200));
    let p = process();
    p.vault_request("SignCertificate");
    p.vault_request_error("SignCertificate", "status");
    p.etcd_request("get");
    p.etcd_request_error("get", "timeout");
    let _open = p.ssh_connection();
    p.ssh_connect_failure();
    p.ssh_hostkey_mismatches.inc();
    p.probed_nodes(&[("10.0.0.1".into(), Duration::from_millis(40))]);
    m.sabakan.set_enabled(true);
    m.sabakan.set_auto_repair_enabled(true);
    let workers = std::collections::BTreeMap::from([("cs".to_string(), 2)]);
    m.sabakan.set_integration(true, &workers, 1, 1_700_000_000);

    let families = check(&m.render());
    let exposed = exposed(&families, "cke_");
    let documented = documented(&docs(), "cke_");
    assert!(!documented.is_empty(), "docs/metrics.md lists no cke_ metric");
    assert_eq!(exposed, documented, "docs/metrics.md and /metrics differ");
    let histograms = families.iter().filter(|f| f.kind == "histogram").count();
    assert_eq!(histograms, 4, "{families:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rivers_metric_parses_and_is_documented() {
    // An upstream that accepts connections, so its series exist.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap().to_string();
    let accept = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = upstream.accept().await {
            held.push(s);
        }
    });
    let mut config = cke::rivers::Config::new("127.0.0.1:0", vec![upstream_addr.clone()]);
    config.metrics = Some("127.0.0.1:0".into());
    config.check_interval = Duration::from_millis(100);
    let server = cke::rivers::Server::bind(config).await.unwrap();
    let (listen, metrics) = (server.local_addr(), server.metrics_addr().unwrap());
    let handle = server.handle();
    let run = tokio::spawn(server.run());
    let _client = tokio::net::TcpStream::connect(listen).await.unwrap();

    let http = cke::infra::http_client_builder().build().unwrap();
    let text = http
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let families = check(&text);
    assert_eq!(
        exposed(&families, "rivers_"),
        documented(&docs(), "rivers_"),
        "docs/metrics.md and rivers' /metrics differ"
    );
    let healthy = families.iter().find(|f| f.name == "rivers_upstream_healthy").unwrap();
    assert_eq!(healthy.series, 1, "one series per upstream");

    handle.shutdown_now();
    let _ = run.await;
    accept.abort();
}

#[test]
fn the_checker_refuses_what_is_not_a_good_exposition() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n";
    assert_eq!(check(good).len(), 1);
    for bad in [
        // No TYPE.
        "# HELP a_total A.\na_total 1\n",
        // No HELP.
        "# TYPE a_total counter\na_total 1\n",
        // A histogram without its +Inf bucket, sum and count.
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\n",
        // Not the text format at all.
        "<html>maintenance</html>\n",
    ] {
        let r = std::panic::catch_unwind(|| check(bad));
        assert!(r.is_err(), "accepted:\n{bad}");
    }
}
