//! The GraphQL client against a real GraphQL server (sabakan-compat, in process): CKE's query and
//! variables as CKE sends them (port of CKE's `sabakan/query_test.go`, with sabakan's real filter
//! semantics instead of the mock's canned answers), every field decoded, and each failure kind.

use axum::http::StatusCode;
use axum::routing::post;
use chrono::{TimeZone, Utc};
use cke::sabakan::{MachineSearch, MachineState, QueryError, QueryVariables, SabakanClient};

/// CKE's mock machines, with real data behind them (m1 a healthy boot server, m2 a retired worker,
/// m3 uninitialized and labelled foo=bar), and two compute servers (m4 past its retire date).
const INVENTORY: &str = include_str!("../sabakan-compat/testdata/inventory.yaml");

async fn serve(router: axum::Router) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    (url, tx)
}

#[tokio::test]
async fn searches_as_cke_does() {
    let machines = sabakan_compat::parse_inventory(INVENTORY, Utc::now()).unwrap();
    let (base, _stop) = serve(sabakan_compat::router(sabakan_compat::Store::new(machines))).await;
    let url = format!("{base}/graphql");
    let client = SabakanClient::new();
    let vars = |s: &str| Some(QueryVariables::parse(s).unwrap());
    let cases: Vec<(&str, Option<QueryVariables>, Vec<&str>)> = vec![
        // No variables: the query's defaults leave out boot servers and retired machines.
        ("nil", None, vec!["m3", "m4", "m5"]),
        // `notHaving` given replaces the default: the boot server is back.
        (
            "notHaving",
            vars(r#"{"notHaving": {"states": ["RETIRED"]}}"#),
            vec!["m1", "m3", "m4", "m5"],
        ),
        // `{}` is sent as explicit nulls (CKE re-encodes the variables): everything.
        ("empty", vars("{}"), vec!["m1", "m2", "m3", "m4", "m5"]),
        (
            "labels",
            vars(r#"{"having": {"labels": [{"name": "foo", "value": "bar"}]}}"#),
            vec!["m3"],
        ),
        ("racks", vars(r#"{"having": {"racks": [1]}}"#), vec!["m1"]),
        ("roles", vars(r#"{"having": {"roles": ["worker"]}}"#), vec!["m2"]),
        (
            "states",
            vars(r#"{"having": {"states": ["UNINITIALIZED"]}}"#),
            vec!["m3"],
        ),
        (
            "minDays",
            vars(r#"{"having": {"minDaysBeforeRetire": 90}}"#),
            vec!["m1", "m2", "m3", "m5"],
        ),
    ];
    for (name, v, want) in cases {
        let got = client
            .search(&url, v.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let serials: Vec<&str> = got.iter().map(|m| m.spec.serial.as_str()).collect();
        assert_eq!(serials, want, "{name}");
        // CKE's testMachine: every field of m1.
        if let Some(m1) = got.iter().find(|m| m.spec.serial == "m1") {
            assert_eq!(m1.spec.labels.len(), 2);
            assert_eq!(
                (m1.spec.labels[0].name.as_str(), m1.spec.labels[0].value.as_str()),
                ("label1", "value1")
            );
            assert_eq!((m1.spec.rack, m1.spec.index_in_rack), (1, 3));
            assert_eq!(m1.spec.role, "boot");
            assert_eq!(m1.spec.ipv4, ["10.0.1.3"]);
            assert_eq!(
                m1.spec.register_date,
                Utc.with_ymd_and_hms(2018, 12, 2, 0, 0, 0).unwrap()
            );
            assert_eq!(m1.spec.retire_date, Utc.with_ymd_and_hms(2099, 1, 2, 0, 0, 0).unwrap());
            assert_eq!(m1.spec.bmc.bmc_type, "iDRAC");
            assert_eq!(m1.status.state, MachineState::Healthy);
            assert!(m1.status.duration >= 0.0);
        }
    }
}

#[tokio::test]
async fn failures_name_sabakan_and_why() {
    let client = SabakanClient::new();
    let router = axum::Router::new()
        .route(
            "/errors",
            post(|| async { r#"{"data": null, "errors": [{"message": "bad state value"}]}"# }),
        )
        .route(
            "/status",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "sabakan is sad") }),
        )
        .route("/garbage", post(|| async { "<html>" }));
    let (base, _stop) = serve(router).await;

    let e = client.search(&format!("{base}/errors"), None).await.unwrap_err();
    assert!(
        matches!(&e, QueryError::GraphQl { messages, .. } if messages == &["bad state value"]),
        "{e}"
    );
    let e = client.search(&format!("{base}/status"), None).await.unwrap_err();
    assert!(
        matches!(&e, QueryError::Status { status: 500, body, .. } if body == "sabakan is sad"),
        "{e}"
    );
    let e = client.search(&format!("{base}/garbage"), None).await.unwrap_err();
    assert!(matches!(e, QueryError::Decode { .. }), "{e}");
    let closed = format!("http://127.0.0.1:{}/graphql", cke_testkit::free_port());
    let e = client.search(&closed, None).await.unwrap_err();
    assert!(matches!(e, QueryError::Http { .. }), "{e}");
    assert!(e.to_string().contains(&closed), "the error names the URL: {e}");
}
