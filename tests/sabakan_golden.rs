//! Golden cases of the sabakan integration, ported from CKE's `sabakan/` tests as data in
//! `testdata/sabakan/` (format in its README): the generator (generate, update, regenerate, rack
//! distribution), machine-to-node conversion, scores and template validation. One test per file
//! runs every case of it and reports every failing case.
//!
//! This file owns the case schema and the fixtures (machines from short specs, CKE's `createRack`);
//! every expectation lives in the case files.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_yaml::Value;

use cke::model::{
    Cluster, ClusterStatus, Constraints, KubeNode, Node, RebootQueueEntry, RebootStatus, Repair, RepairEntry, Taint,
};
use cke::sabakan::generator::{machine_to_node, GenerateError, Generator};
use cke::sabakan::machine::{Bmc, Label, Machine, MachineSpec, MachineState, MachineStatus};
use cke::sabakan::repairer::repair_entries;
use cke::sabakan::score::{filter_healthy_by_role, score_machine, score_machine_with_health};
use cke::sabakan::template::parse_template;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sabakan")
}

fn load<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// CKE's test dates by name, or RFC 3339.
fn date(s: &str) -> DateTime<Utc> {
    let ymd = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap();
    match s {
        "base" => ymd(2018, 12, 2),
        "future250" => ymd(2019, 12, 2),
        "future500" => ymd(2020, 6, 2),
        "future1000" => ymd(2021, 12, 2),
        "past250" => ymd(2017, 12, 2),
        "past500" => ymd(2017, 6, 2),
        "past1000" => ymd(2015, 12, 2),
        other => DateTime::parse_from_rfc3339(other)
            .unwrap_or_else(|e| panic!("date {other:?}: {e}"))
            .with_timezone(&Utc),
    }
}

/// A machine in short form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineSpecShort {
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    serial: String,
    #[serde(default)]
    rack: i64,
    #[serde(default)]
    index: i64,
    #[serde(default)]
    role: String,
    #[serde(default = "base")]
    register: String,
    #[serde(default = "base")]
    retire: String,
    #[serde(default = "healthy")]
    state: MachineState,
    /// CKE's `newTestMachineWithIP`: twice the wait for retired workers.
    #[serde(default = "duration")]
    duration: f64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// The BMC type (the repair queue's machine type).
    #[serde(default)]
    bmc: String,
}

fn base() -> String {
    "base".into()
}
fn healthy() -> MachineState {
    MachineState::Healthy
}
fn duration() -> f64 {
    600.0
}

impl MachineSpecShort {
    fn machine(&self) -> Machine {
        Machine {
            spec: MachineSpec {
                serial: self.serial.clone(),
                labels: self
                    .labels
                    .iter()
                    .map(|(k, v)| Label {
                        name: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
                rack: self.rack,
                index_in_rack: self.index,
                role: self.role.clone(),
                ipv4: self.ip.iter().cloned().collect(),
                register_date: date(&self.register),
                retire_date: date(&self.retire),
                bmc: Bmc {
                    bmc_type: self.bmc.clone(),
                },
            },
            status: MachineStatus {
                state: self.state,
                duration: self.duration,
            },
        }
    }
}

/// CKE's `createRack`: standard racks hold 18 cs then 10 ss machines, storage racks 19 ss.
fn create_rack(rack: i64, kind: &str) -> Vec<Machine> {
    let (cs, ss) = match kind {
        "standard" => (18, 10),
        "storage" => (0, 19),
        other => panic!("rack type {other:?}"),
    };
    (0..cs + ss)
        .map(|i| {
            MachineSpecShort {
                ip: Some(format!("10.0.{rack}.{}", i + 1)),
                serial: String::new(),
                rack,
                index: 0,
                role: if i < cs { "cs" } else { "ss" }.into(),
                register: base(),
                retire: base(),
                state: MachineState::Healthy,
                duration: duration(),
                labels: BTreeMap::new(),
                bmc: String::new(),
            }
            .machine()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Generator cases.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeneratorFile {
    #[allow(dead_code)]
    cke_test: String,
    now: String,
    template: Value,
    machines: Vec<MachineSpecShort>,
    cases: Vec<GeneratorCase>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum MachinesSpec {
    Addresses(Vec<String>),
    Machines(Vec<MachineSpecShort>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RackSpec {
    rack: i64,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeneratorCase {
    name: String,
    #[allow(dead_code)]
    cke_test: String,
    #[serde(default)]
    template: Option<Value>,
    #[serde(default)]
    constraints: Option<Constraints>,
    #[serde(default)]
    k8s_nodes: Vec<KubeNodeSpec>,
    /// Several steps, or one given inline.
    #[serde(default)]
    steps: Vec<Step>,
    #[serde(flatten)]
    step: Step,
}

/// One generation; `action` and `expect` are required.
#[derive(Debug, Clone, Default, Deserialize)]
struct Step {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    machines: Option<MachinesSpec>,
    #[serde(default)]
    racks: Option<Vec<RackSpec>>,
    #[serde(default)]
    unhealthy_first: usize,
    #[serde(default)]
    current: Option<CurrentSpec>,
    #[serde(default)]
    expect: Option<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubeNodeSpec {
    name: String,
    #[serde(default)]
    taints: Vec<Taint>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CurrentSpec {
    #[serde(default)]
    control_planes: Vec<String>,
    #[serde(default)]
    workers: Vec<String>,
    #[serde(default)]
    taints: BTreeMap<String, Vec<Taint>>,
}

impl CurrentSpec {
    fn cluster(&self) -> Cluster {
        let node = |a: &String, cp: bool| {
            let mut n = Node::new(a, "cybozu", cp);
            n.taints = self.taints.get(a).cloned().unwrap_or_default();
            n
        };
        let nodes = self
            .control_planes
            .iter()
            .map(|a| node(a, true))
            .chain(self.workers.iter().map(|a| node(a, false)))
            .collect();
        Cluster::new("current", "10.0.0.0/14", nodes)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    unchanged: bool,
    #[serde(default)]
    control_planes: Option<Vec<String>>,
    #[serde(default)]
    workers: Option<Vec<String>>,
    #[serde(default)]
    op: Option<String>,
    #[serde(default)]
    taints: BTreeMap<String, Vec<Taint>>,
    #[serde(default)]
    workers_by_rack: Option<BTreeMap<String, BTreeMap<String, usize>>>,
}

fn error_name(e: &GenerateError) -> &'static str {
    match e {
        GenerateError::NotAvailable => "not-available",
        GenerateError::MissingMachine { .. } => "missing-machine",
        GenerateError::TooManyNonExistent { .. } => "too-many-non-existent",
        GenerateError::NoTemplateForRole { .. } => "no-template-for-role",
        GenerateError::InvalidTemplate(_) => "invalid-template",
        GenerateError::Invalid(_) => "invalid",
    }
}

fn parse_template_value(v: &Value) -> Cluster {
    parse_template(&serde_yaml::to_string(v).unwrap()).unwrap_or_else(|e| panic!("template: {e}"))
}

/// Runs one step; returns the problems and the declaration to carry on with.
#[allow(clippy::too_many_arguments)]
fn run_step(
    file: &GeneratorFile,
    template: &Cluster,
    constraints: Constraints,
    status: &ClusterStatus,
    step: &Step,
    carried: Option<Cluster>,
    now: DateTime<Utc>,
) -> (Vec<String>, Option<Cluster>) {
    let mut problems = Vec::new();
    let mut machines: Vec<Machine> = match (&step.racks, &step.machines) {
        (Some(racks), _) => racks.iter().flat_map(|r| create_rack(r.rack, &r.kind)).collect(),
        (None, Some(MachinesSpec::Machines(ms))) => ms.iter().map(MachineSpecShort::machine).collect(),
        (None, Some(MachinesSpec::Addresses(addrs))) => addrs
            .iter()
            .map(|a| {
                file.machines
                    .iter()
                    .find(|m| m.ip.as_deref() == Some(a))
                    .unwrap_or_else(|| panic!("no machine {a} in the file"))
                    .machine()
            })
            .collect(),
        (None, None) => file.machines.iter().map(MachineSpecShort::machine).collect(),
    };
    for m in machines.iter_mut().take(step.unhealthy_first) {
        m.status.state = MachineState::Unhealthy;
    }
    let current = step.current.as_ref().map(CurrentSpec::cluster).or(carried);
    let action = step.action.as_deref().expect("every step has an action");
    let mut g = Generator::new(template, constraints, &machines, Some(status), now).expect("a valid template");
    let result = match action {
        "generate" => g.generate().map(Some),
        "update" => g.update(current.as_ref().expect("update needs a current declaration")),
        "regenerate" => g
            .regenerate(current.as_ref().expect("regenerate needs a current declaration"))
            .map(Some),
        other => panic!("action {other:?}"),
    };
    let e = step.expect.as_ref().expect("every step has an expectation");
    match (&e.error, result) {
        (Some(want), Err(got)) => {
            if error_name(&got) != want {
                problems.push(format!("error {} ({got}), expected {want}", error_name(&got)));
            }
            (problems, current)
        }
        (Some(want), Ok(got)) => {
            problems.push(format!("expected error {want}, got {got:?}"));
            (problems, current)
        }
        (None, Err(got)) => {
            problems.push(format!("unexpected error: {got}"));
            (problems, current)
        }
        (None, Ok(None)) => {
            if !e.unchanged {
                problems.push("nothing changed, expected a new declaration".into());
            }
            (problems, current)
        }
        (None, Ok(Some(generated))) => {
            if e.unchanged {
                problems.push(format!("expected no change, got {:?}", generated.op));
            }
            let c = &generated.cluster;
            let mut rest = c.clone();
            rest.nodes = template.nodes.clone();
            if &rest != template {
                problems.push("the declaration differs from the template beyond its nodes".into());
            }
            let cps: Vec<String> = c.control_planes().map(|n| n.address.clone()).collect();
            let workers: Vec<String> = c.workers().map(|n| n.address.clone()).collect();
            if let Some(want) = &e.control_planes {
                if &cps != want {
                    problems.push(format!("control planes {cps:?}, expected {want:?}"));
                }
            }
            if let Some(want) = &e.workers {
                if &workers != want {
                    problems.push(format!("workers {workers:?}, expected {want:?}"));
                }
            }
            if let Some(want) = &e.op {
                if generated.op.name != want {
                    problems.push(format!("op {:?}, expected {want:?}", generated.op.name));
                }
            }
            for (addr, want) in &e.taints {
                match c.node(addr) {
                    None => problems.push(format!("no node {addr}")),
                    Some(n) if &n.taints != want => {
                        problems.push(format!("{addr} taints {:?}, expected {want:?}", n.taints))
                    }
                    _ => {}
                }
            }
            if let Some(want) = &e.workers_by_rack {
                let mut got: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
                for n in c.workers() {
                    *got.entry(n.labels["cke.cybozu.com/rack"].clone())
                        .or_default()
                        .entry(n.labels["cke.cybozu.com/role"].clone())
                        .or_default() += 1;
                }
                if &got != want {
                    problems.push(format!("workers by rack {got:?}, expected {want:?}"));
                }
            }
            (problems, Some(generated.cluster))
        }
    }
}

fn run_generator_file(name: &str) {
    let file: GeneratorFile = load(name);
    let now = date(&file.now);
    let mut report = String::new();
    for case in &file.cases {
        let template = parse_template_value(case.template.as_ref().unwrap_or(&file.template));
        let constraints = case.constraints.unwrap_or_default();
        let status = ClusterStatus {
            kubernetes: cke::model::KubernetesStatus {
                api_read: true,
                nodes: case
                    .k8s_nodes
                    .iter()
                    .map(|n| KubeNode {
                        name: n.name.clone(),
                        taints: n.taints.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
            ..Default::default()
        };
        let steps: Vec<Step> = if case.steps.is_empty() {
            vec![case.step.clone()]
        } else {
            case.steps.clone()
        };
        let mut carried = None;
        for (i, step) in steps.iter().enumerate() {
            let (problems, next) = run_step(&file, &template, constraints, &status, step, carried, now);
            for p in problems {
                let _ = writeln!(
                    report,
                    "{name} {} step {} ({}): {p}",
                    case.name,
                    i + 1,
                    step.action.as_deref().unwrap_or("?")
                );
            }
            carried = next;
        }
    }
    assert!(report.is_empty(), "failing golden cases:\n{report}");
}

#[test]
fn generate() {
    run_generator_file("generate.yaml");
}

#[test]
fn update() {
    run_generator_file("update.yaml");
}

#[test]
fn regenerate() {
    run_generator_file("regenerate.yaml");
}

#[test]
fn rack_distribution() {
    run_generator_file("rack-distribution.yaml");
}

// ---------------------------------------------------------------------------------------------
// Machine to node, scores, templates.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineToNodeFile {
    #[allow(dead_code)]
    cke_test: String,
    machine: MachineSpecShort,
    template: Node,
    node: Node,
    state_taints: BTreeMap<MachineState, Option<Taint>>,
}

#[test]
fn machine_to_node_by_state() {
    let f: MachineToNodeFile = load("machine-to-node.yaml");
    assert_eq!(f.state_taints.len(), MachineState::ALL.len(), "every state has a case");
    for (state, taint) in &f.state_taints {
        let mut spec = f.machine.clone();
        spec.state = *state;
        let mut want = f.node.clone();
        want.taints.extend(taint.clone());
        assert_eq!(machine_to_node(&spec.machine(), &f.template), want, "state {state}");
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreFile {
    #[allow(dead_code)]
    cke_test: String,
    now: String,
    scores: Vec<ScoreCase>,
    filter_machines: Vec<MachineSpecShort>,
    filters: Vec<FilterCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreCase {
    name: String,
    #[allow(dead_code)]
    cke_test: String,
    machine: MachineSpecShort,
    #[serde(default)]
    rack_count: HashMap<i64, i64>,
    #[serde(default)]
    with_health: bool,
    expect: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterCase {
    name: String,
    #[allow(dead_code)]
    cke_test: String,
    role: String,
    expect: Vec<usize>,
}

#[test]
fn scores() {
    let f: ScoreFile = load("score.yaml");
    let now = date(&f.now);
    let mut report = String::new();
    for c in &f.scores {
        let m = c.machine.machine();
        let got = if c.with_health {
            score_machine_with_health(&m, &c.rack_count, now)
        } else {
            score_machine(&m, &c.rack_count, now)
        };
        if got != c.expect {
            let _ = writeln!(report, "{}: score {got}, expected {}", c.name, c.expect);
        }
    }
    let machines: Vec<Machine> = f.filter_machines.iter().map(MachineSpecShort::machine).collect();
    for c in &f.filters {
        let got: Vec<usize> = filter_healthy_by_role(&machines, &c.role)
            .into_iter()
            .map(|m| machines.iter().position(|x| std::ptr::eq(x, m)).unwrap())
            .collect();
        if got != c.expect {
            let _ = writeln!(report, "{}: {got:?}, expected {:?}", c.name, c.expect);
        }
    }
    assert!(report.is_empty(), "failing score cases:\n{report}");
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    #[allow(dead_code)]
    cke_test: String,
    base: String,
    cases: Vec<TemplateCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateCase {
    name: String,
    nodes: Value,
    #[serde(default)]
    valid: bool,
    #[serde(default)]
    error: Option<String>,
}

#[test]
fn templates() {
    let f: TemplateFile = load("template.yaml");
    let mut report = String::new();
    for c in &f.cases {
        assert!(c.valid != c.error.is_some(), "{}: valid or error, not both", c.name);
        let text = format!("{}nodes:\n{}", f.base, serde_yaml::to_string(&c.nodes).unwrap());
        match (parse_template(&text), &c.error) {
            (Ok(_), None) => {}
            (Ok(_), Some(path)) => {
                let _ = writeln!(report, "{}: accepted, expected an error at {path}", c.name);
            }
            (Err(e), None) => {
                let _ = writeln!(report, "{}: refused: {e}", c.name);
            }
            (Err(e), Some(path)) => {
                if !e.has_path(path) {
                    let _ = writeln!(report, "{}: error {e}, expected one at {path}", c.name);
                }
            }
        }
    }
    assert!(report.is_empty(), "failing template cases:\n{report}");
}

/// `make demo` with `DEMO_SABAKAN=1`: its template and inventory give testdata/cluster-demo.yml's
/// nodes (control planes 10.66.0.11-13, workers .14 and .15) and options.
#[test]
fn the_demo_template_and_inventory_make_the_demo_declaration() {
    let read = |name: &str| {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)).unwrap()
    };
    let template = parse_template(&read("sabakan-demo-template.yml")).unwrap();
    let inventory = sabakan_compat::parse_inventory(&read("sabakan-demo-inventory.yml"), Utc::now()).unwrap();
    let machines: Vec<Machine> = inventory
        .iter()
        .map(|m| {
            MachineSpecShort {
                ip: Some(m.ipv4[0].clone()),
                serial: m.serial.clone(),
                rack: m.rack.into(),
                index: m.index_in_rack.into(),
                role: m.role.clone(),
                register: m.register_date.to_rfc3339(),
                retire: m.retire_date.to_rfc3339(),
                state: MachineState::Healthy,
                duration: 0.0,
                labels: m.labels.clone(),
                bmc: m.bmc_type.clone(),
            }
            .machine()
        })
        .collect();
    let constraints = Constraints::default().with("control-plane-count", "3").unwrap();
    let mut g = Generator::new(&template, constraints, &machines, None, Utc::now()).unwrap();
    let generated = g.generate().unwrap().cluster;
    let demo = cke::model::parse_cluster(&read("cluster-demo.yml")).unwrap();
    let addresses = |c: &Cluster, cp: bool| -> Vec<String> {
        c.nodes
            .iter()
            .filter(|n| n.control_plane == cp)
            .map(|n| n.address.clone())
            .collect()
    };
    assert_eq!(addresses(&generated, true), addresses(&demo, true));
    assert_eq!(addresses(&generated, false), addresses(&demo, false));
    assert_eq!(generated.options, demo.options);
}

// ---------------------------------------------------------------------------------------------
// Sabakan-triggered repair.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepairerFile {
    #[allow(dead_code)]
    cke_test: String,
    constraints: Constraints,
    machines: Vec<MachineSpecShort>,
    nodes: Vec<String>,
    repair: Repair,
    cases: Vec<RepairerCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepairerCase {
    name: String,
    /// Serials of the file's machines.
    machines: Vec<String>,
    #[serde(default)]
    queued: Vec<EntrySpec>,
    #[serde(default)]
    reboots: Vec<RebootSpec>,
    #[serde(default = "yes")]
    in_cluster: bool,
    expect: Vec<EntrySpec>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySpec {
    operation: String,
    machine_type: String,
    address: String,
    serial: String,
}

impl EntrySpec {
    fn entry(&self) -> RepairEntry {
        RepairEntry::new(&self.operation, &self.machine_type, &self.address, &self.serial)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RebootSpec {
    node: String,
    status: RebootStatus,
}

#[test]
fn repairer() {
    let f: RepairerFile = load("repairer.yaml");
    let mut report = String::new();
    for c in &f.cases {
        let machines: Vec<Machine> = c
            .machines
            .iter()
            .map(|serial| {
                f.machines
                    .iter()
                    .find(|m| &m.serial == serial)
                    .unwrap_or_else(|| panic!("{}: no machine {serial}", c.name))
                    .machine()
            })
            .collect();
        let queued: Vec<RepairEntry> = c.queued.iter().map(EntrySpec::entry).collect();
        let reboots: Vec<RebootQueueEntry> = c
            .reboots
            .iter()
            .map(|r| RebootQueueEntry {
                status: r.status,
                ..RebootQueueEntry::new(&r.node)
            })
            .collect();
        let nodes = match c.in_cluster {
            true => f.nodes.iter().map(|a| Node::new(a, "root", false)).collect(),
            false => vec![],
        };
        let mut cluster = Cluster::new("c", "10.68.0.0/16", nodes);
        cluster.repair = Some(f.repair.clone());
        let (got, _) = repair_entries(&machines, &queued, &reboots, &cluster, &f.constraints);
        let want: Vec<RepairEntry> = c.expect.iter().map(EntrySpec::entry).collect();
        if got != want {
            let _ = writeln!(report, "{}: {got:?}, expected {want:?}", c.name);
        }
    }
    assert!(report.is_empty(), "failing repairer cases:\n{report}");
}
