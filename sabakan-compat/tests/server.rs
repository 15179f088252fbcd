//! sabakan-compat over HTTP: `searchMachines` with `having`/`notHaving` filters, every field, sabakan's state API and its transition rules, and the GraphQL mutation.

use std::time::Duration;

use serde_json::{json, Value};

/// The search with its filters as variables, as CKE sends it (cke's own tests send CKE's exact
/// query and check every field it reads).
const SEARCH: &str = r#"
query search($having: MachineParams = null,
             $notHaving: MachineParams = {roles: ["boot"] states: [RETIRED]}) {
  searchMachines(having: $having, notHaving: $notHaving) {
    spec { serial labels { name value } rack indexInRack role ipv4 registerDate retireDate bmc { bmcType ipv4 } }
    status { state timestamp duration }
  }
}
"#;

/// The inventory the tests serve.
const INVENTORY: &str = include_str!("../testdata/inventory.yaml");

/// A case: its name, the variables, and the serials found or a part of the error.
type Case<'a> = (&'a str, Option<Value>, Result<Vec<&'a str>, &'a str>);

struct Server {
    url: String,
    http: reqwest::Client,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Server {
    let machines = sabakan_compat::parse_inventory(INVENTORY, chrono::Utc::now()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sabakan_compat::serve(
        listener,
        sabakan_compat::Store::new(machines),
        async {
            let _ = rx.await;
        },
    ));
    // The workspace builds reqwest with rustls and without a crypto provider; ring is cke's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Server {
        url,
        http: reqwest::Client::new(),
        _shutdown: tx,
    }
}

impl Server {
    async fn graphql(&self, query: &str, variables: Option<Value>) -> Value {
        let mut body = json!({ "query": query });
        if let Some(v) = variables {
            body["variables"] = v;
        }
        let resp = self
            .http
            .post(format!("{}/graphql", self.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Serials CKE's query returns for these variables, or the GraphQL error.
    async fn search(&self, variables: Option<Value>) -> Result<Vec<String>, String> {
        let v = self.graphql(SEARCH, variables).await;
        if let Some(e) = v["errors"].as_array() {
            return Err(e
                .iter()
                .map(|e| e["message"].to_string())
                .collect::<Vec<_>>()
                .join("; "));
        }
        Ok(v["data"]["searchMachines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["spec"]["serial"].as_str().unwrap().to_string())
            .collect())
    }

    async fn put_state(&self, serial: &str, state: &str) -> (u16, String) {
        let resp = self
            .http
            .put(format!("{}/api/v1/state/{serial}", self.url))
            .body(state.to_string())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn get_state(&self, serial: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}/api/v1/state/{serial}", self.url))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

#[tokio::test]
async fn cke_query_with_having_and_not_having() {
    let s = start().await;
    let cases: Vec<Case> = vec![
        // The query's defaults: no boot server, no retired machine.
        ("defaults", None, Ok(vec!["m3", "m4", "m5"])),
        // Explicit nulls (CKE sends `{}` so) lift the defaults.
        (
            "nulls",
            Some(json!({"having": null, "notHaving": null})),
            Ok(vec!["m1", "m2", "m3", "m4", "m5"]),
        ),
        (
            "notHaving states",
            Some(json!({"having": null, "notHaving": {"states": ["RETIRED"]}})),
            Ok(vec!["m1", "m3", "m4", "m5"]),
        ),
        (
            "having labels (all)",
            Some(json!({"having": {"labels": [{"name": "label2", "value": "value2"}]}, "notHaving": null})),
            Ok(vec!["m1", "m2"]),
        ),
        (
            "having labels, two",
            Some(
                json!({"having": {"labels": [{"name": "label1", "value": "value1"}, {"name": "label2", "value": "value2"}]}, "notHaving": null}),
            ),
            Ok(vec!["m1"]),
        ),
        (
            "having labels, wrong value",
            Some(json!({"having": {"labels": [{"name": "foo", "value": "baz"}]}, "notHaving": null})),
            Ok(vec![]),
        ),
        (
            "notHaving labels (any)",
            Some(
                json!({"having": null, "notHaving": {"labels": [{"name": "label1", "value": "value1"}, {"name": "foo", "value": "bar"}]}}),
            ),
            Ok(vec!["m2", "m4", "m5"]),
        ),
        (
            "having racks",
            Some(json!({"having": {"racks": [1, 2]}, "notHaving": null})),
            Ok(vec!["m1", "m4", "m5"]),
        ),
        (
            "notHaving racks",
            Some(json!({"having": null, "notHaving": {"racks": [0]}})),
            Ok(vec!["m1", "m4", "m5"]),
        ),
        (
            "having roles",
            Some(json!({"having": {"roles": ["worker"]}, "notHaving": null})),
            Ok(vec!["m2"]),
        ),
        (
            "having roles and states",
            Some(json!({"having": {"roles": ["cs"], "states": ["HEALTHY"]}, "notHaving": null})),
            Ok(vec!["m4"]),
        ),
        (
            "having states",
            Some(json!({"having": {"states": ["UNINITIALIZED"]}, "notHaving": null})),
            Ok(vec!["m3"]),
        ),
        (
            "having minDaysBeforeRetire",
            Some(json!({"having": {"minDaysBeforeRetire": 90}, "notHaving": null})),
            Ok(vec!["m1", "m2", "m3", "m5"]),
        ),
        (
            "notHaving minDaysBeforeRetire",
            Some(json!({"having": null, "notHaving": {"minDaysBeforeRetire": 90}})),
            Ok(vec!["m4"]),
        ),
        (
            "bad state",
            Some(json!({"having": {"states": ["bad"]}})),
            Err("MachineState"),
        ),
        (
            "unknown field",
            Some(json!({"having": {"colour": ["red"]}})),
            Err("colour"),
        ),
    ];
    let mut failures = Vec::new();
    for (name, vars, want) in cases {
        let got = s.search(vars).await;
        let ok = match (&got, &want) {
            (Ok(g), Ok(w)) => g == w,
            (Err(e), Err(w)) => e.contains(w),
            _ => false,
        };
        if !ok {
            failures.push(format!("{name}: got {got:?}, expected {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_field() {
    let s = start().await;
    let v = s
        .graphql(SEARCH, Some(json!({"having": {"roles": ["boot"]}, "notHaving": null})))
        .await;
    let m = &v["data"]["searchMachines"][0];
    assert_eq!(
        m["spec"],
        json!({
            "serial": "m1",
            "labels": [{"name": "label1", "value": "value1"}, {"name": "label2", "value": "value2"}],
            "rack": 1, "indexInRack": 3, "role": "boot", "ipv4": ["10.0.1.3"],
            "registerDate": "2018-12-02T00:00:00Z", "retireDate": "2099-01-02T00:00:00Z",
            "bmc": {"bmcType": "iDRAC", "ipv4": "172.168.1.3"}
        })
    );
    assert_eq!(m["status"]["state"], "HEALTHY");
    assert!(m["status"]["duration"].as_f64().unwrap() >= 0.0);
    // No labels: null, as sabakan answers.
    let v = s
        .graphql(
            SEARCH,
            Some(json!({"having": {"racks": [2], "roles": ["ss"]}, "notHaving": null})),
        )
        .await;
    assert_eq!(v["data"]["searchMachines"][0]["spec"]["labels"], Value::Null);
    assert_eq!(
        v["data"]["searchMachines"][0]["spec"]["ipv4"],
        json!(["10.0.2.2", "10.1.2.2"])
    );
    // machine(serial) and the fields CKE does not ask for.
    let v = s
        .graphql(
            r#"{ machine(serial: "m1") { spec { bmc { ipv4 } } status { timestamp } } }"#,
            None,
        )
        .await;
    assert_eq!(v["data"]["machine"]["spec"]["bmc"]["ipv4"], "172.168.1.3");
    assert!(v["data"]["machine"]["status"]["timestamp"].is_string());
    let v = s
        .graphql(r#"{ machine(serial: "nope") { spec { serial } } }"#, None)
        .await;
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("nope"));
}

#[tokio::test]
async fn states_change_as_sabakan_permits() {
    let s = start().await;
    assert_eq!(s.get_state("m4").await, (200, "healthy".into()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = s
        .graphql(r#"{ machine(serial: "m4") { status { duration } } }"#, None)
        .await["data"]["machine"]["status"]["duration"]
        .as_f64()
        .unwrap();
    assert!(before >= 0.3, "duration counts from the start: {before}");

    // healthy -> unreachable: the duration starts again.
    assert_eq!(s.put_state("m4", "unreachable\n").await.0, 200);
    assert_eq!(s.get_state("m4").await, (200, "unreachable".into()));
    let v = s
        .graphql(r#"{ machine(serial: "m4") { status { state duration } } }"#, None)
        .await;
    assert_eq!(v["data"]["machine"]["status"]["state"], "UNREACHABLE");
    assert!(v["data"]["machine"]["status"]["duration"].as_f64().unwrap() < before);
    assert_eq!(
        s.search(Some(json!({"having": {"states": ["UNREACHABLE"]}, "notHaving": null})))
            .await,
        Ok(vec!["m4".to_string()])
    );
    // Unreachable cannot become retired directly, nor unhealthy.
    let (code, body) = s.put_state("m4", "retired").await;
    assert_eq!(code, 400);
    assert!(
        body.contains("transition from unreachable to state retired is forbidden"),
        "{body}"
    );
    // The same state is no change.
    assert_eq!(s.put_state("m4", "unreachable").await.0, 200);
    // retiring, then retired: the machine leaves CKE's default search.
    assert_eq!(s.put_state("m4", "retiring").await.0, 200);
    assert_eq!(s.put_state("m4", "retired").await.0, 200);
    assert_eq!(s.search(None).await, Ok(vec!["m3".to_string(), "m5".to_string()]));
    // Bad input.
    let (code, body) = s.put_state("m4", "RETIRED").await;
    assert_eq!(code, 400);
    assert!(body.contains("invalid state"), "{body}");
    assert_eq!(s.put_state("nope", "healthy").await.0, 404);
    assert_eq!(s.get_state("nope").await.0, 404);

    // The GraphQL mutation does the same.
    let v = s
        .graphql(
            r#"mutation { setMachineState(serial: "m5", state: UNHEALTHY) { state } }"#,
            None,
        )
        .await;
    assert_eq!(v["data"]["setMachineState"]["state"], "UNHEALTHY");
    assert_eq!(s.get_state("m5").await, (200, "unhealthy".into()));
    let v = s
        .graphql(
            r#"mutation { setMachineState(serial: "m5", state: UPDATING) { state } }"#,
            None,
        )
        .await;
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("forbidden"), "{v}");

    // The REST listing shows sabakan's spelling.
    let list: Value = s
        .http
        .get(format!("{}/api/v1/machines", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 5);
    assert_eq!(list[3]["status"]["state"], "retired");
    assert_eq!(list[3]["spec"]["index-in-rack"], 0);
}
