//! The cluster declaration generated from sabakan's machines and a template (CKE's
//! `sabakan/generator.go`): [`Generator::generate`] a new one, [`Generator::update`] the current one
//! with the smallest change that is needed (remove vanished nodes, add or demote control planes, add
//! or remove workers, taint nodes by machine state), or [`Generator::regenerate`] it from a new
//! template with the same machines. Control planes are chosen by score ([`super::score`]): spread
//! over racks, long-lived, untainted, spare machines first.
//!
//! Pure: no clock (the time is an argument), no I/O. Where CKE iterates a Go map (random order),
//! this follows the machines' order as sabakan returned them, so a decision is reproducible.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};

use super::machine::{Machine, MachineState};
use super::score::{filter_healthy_by_role, score_machine, score_machine_with_health};
use super::template::{validate_template, CKE_LABEL_ROLE};
use crate::model::{Cluster, ClusterStatus, Constraints, Node, Taint, ValidationError};

/// Seconds a worker stays RETIRED before it is removed (CKE's `DefaultWaitRetiredSeconds`).
pub const DEFAULT_WAIT_RETIRED_SECONDS: f64 = 300.0;
/// The taint CKE puts on nodes by machine state.
pub const STATE_TAINT_KEY: &str = "cke.cybozu.com/state";
/// The taint CKE puts on control planes (`taint_control_plane`).
const MASTER_TAINT_KEY: &str = "cke.cybozu.com/master";

/// Why no declaration could be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// Not enough healthy machines to satisfy the constraints.
    #[error("no healthy machine is available")]
    NotAvailable,
    /// The template changed, but some nodes of the current declaration are no longer in sabakan.
    #[error("failed to apply new template due to missing machines: {}", .addresses.join(", "))]
    MissingMachine {
        /// The nodes with no machine.
        addresses: Vec<String>,
    },
    /// Half or more of the control planes vanished from sabakan: replacing them would break the
    /// managed etcd, so an administrator must fix the declaration.
    #[error(
        "too many non-existent control plane nodes: {remaining} of {current} control planes remain in sabakan (more than half must)"
    )]
    TooManyNonExistent {
        /// Control planes declared.
        current: usize,
        /// Those still in sabakan.
        remaining: usize,
    },
    /// A worker's machine role has no worker template (the template changed its roles).
    #[error("no worker template for role {role:?} of machine {address}")]
    NoTemplateForRole {
        /// The machine's role.
        role: String,
        /// The machine's address.
        address: String,
    },
    /// The template is not a valid template.
    #[error("the template is invalid")]
    InvalidTemplate(#[source] ValidationError),
    /// The generated declaration does not validate.
    #[error("the generated declaration is invalid")]
    Invalid(#[source] ValidationError),
}

/// What changed and why (CKE logs these with each generated declaration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateOp {
    /// The rule that applied: `new`, `regenerate`, `remove non-existent node`, `increase control
    /// plane`, `decrease control plane`, `increase worker`, `decrease worker`, `taint nodes`.
    pub name: &'static str,
    /// One line per change.
    pub changes: Vec<String>,
}

impl UpdateOp {
    fn new(name: &'static str) -> Self {
        UpdateOp { name, changes: vec![] }
    }

    fn record(&mut self, msg: impl Into<String>) {
        self.changes.push(msg.into());
    }
}

/// A generated declaration and the change that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The declaration.
    pub cluster: Cluster,
    /// What changed.
    pub op: UpdateOp,
}

/// Converts a machine into a node from its template (CKE's `MachineToNode`): the address is the
/// machine's first IPv4 address; the template's labels, annotations and taints, plus the machine's
/// serial, dates, rack, role and labels (`sabakan.cke.cybozu.com/<name>`), and a
/// `cke.cybozu.com/state` taint for unreachable, retiring and retired machines.
pub fn machine_to_node(m: &Machine, tmpl: &Node) -> Node {
    let mut n = Node::new(m.address().unwrap_or_default(), &tmpl.user, tmpl.control_plane);
    let date = |d: &DateTime<Utc>| d.to_rfc3339_opts(SecondsFormat::Secs, true);
    n.annotations = tmpl.annotations.clone();
    n.annotations
        .insert("cke.cybozu.com/serial".into(), m.spec.serial.clone());
    n.annotations
        .insert("cke.cybozu.com/register-date".into(), date(&m.spec.register_date));
    n.annotations
        .insert("cke.cybozu.com/retire-date".into(), date(&m.spec.retire_date));

    for l in &m.spec.labels {
        n.labels
            .insert(format!("sabakan.cke.cybozu.com/{}", l.name), l.value.clone());
    }
    n.labels.extend(tmpl.labels.clone());
    let rack = m.spec.rack.to_string();
    n.labels.insert("cke.cybozu.com/rack".into(), rack.clone());
    n.labels
        .insert("cke.cybozu.com/index-in-rack".into(), m.spec.index_in_rack.to_string());
    n.labels.insert(CKE_LABEL_ROLE.into(), m.spec.role.clone());
    n.labels.insert(
        "cke.cybozu.com/retire-month".into(),
        m.spec.retire_date.format("%Y-%m").to_string(),
    );
    n.labels.insert(
        "cke.cybozu.com/retire-year".into(),
        m.spec.retire_date.format("%Y").to_string(),
    );
    n.labels.insert(
        "cke.cybozu.com/register-month".into(),
        m.spec.register_date.format("%Y-%m").to_string(),
    );
    n.labels
        .insert(format!("node-role.kubernetes.io/{}", m.spec.role), "true".into());
    if n.control_plane {
        n.labels.insert("node-role.kubernetes.io/master".into(), "true".into());
        n.labels
            .insert("node-role.kubernetes.io/control-plane".into(), "true".into());
    }
    n.labels
        .insert("topology.kubernetes.io/zone".into(), format!("rack{rack}"));

    n.taints = tmpl.taints.clone();
    if let Some((value, effect)) = state_taint(m.status.state) {
        n.taints.push(Taint {
            key: STATE_TAINT_KEY.into(),
            value: value.into(),
            effect: effect.into(),
        });
    }
    n
}

/// The `cke.cybozu.com/state` taint (value, effect) for a machine state, if any.
pub fn state_taint(state: MachineState) -> Option<(&'static str, &'static str)> {
    match state {
        MachineState::Unreachable => Some(("unreachable", "NoSchedule")),
        MachineState::Retiring => Some(("retiring", "NoExecute")),
        MachineState::Retired => Some(("retired", "NoExecute")),
        _ => None,
    }
}

/// One rule of [`Generator::update`]: the change it calls for, if any.
type UpdateRule<'a> = fn(&mut Generator<'a>, &[&Node], &[&Node]) -> Result<Option<UpdateOp>, GenerateError>;

/// A node template and the role it is for (empty: any).
#[derive(Debug, Clone)]
struct NodeTemplate {
    node: Node,
    role: String,
}

/// Generates and updates the declaration. Machines are referred to by their index in
/// [`Generator::machines`].
#[derive(Debug)]
pub struct Generator<'a> {
    template: &'a Cluster,
    constraints: Constraints,
    now: DateTime<Utc>,
    wait_seconds: f64,
    /// Machines with an address, one per address (a later duplicate replaces an earlier one, as
    /// CKE's map does), in sabakan's order.
    machines: Vec<Machine>,
    by_address: HashMap<String, usize>,
    /// Taints of the Kubernetes Nodes of the machines, by address.
    node_taints: HashMap<String, Vec<Taint>>,
    cp_tmpl: NodeTemplate,
    worker_tmpls: Vec<NodeTemplate>,

    next_unused: Vec<usize>,
    next_cps: Vec<usize>,
    next_workers: Vec<usize>,
    count_worker_by_role: BTreeMap<String, i64>,
}

impl<'a> Generator<'a> {
    /// A generator for `template` (validated here), the constraints, sabakan's `machines` (those
    /// without an IPv4 address are left out) and, when known, the cluster's status (the taints of
    /// its Nodes), at `now`.
    pub fn new(
        template: &'a Cluster,
        constraints: Constraints,
        machines: &[Machine],
        status: Option<&ClusterStatus>,
        now: DateTime<Utc>,
    ) -> Result<Self, GenerateError> {
        validate_template(template).map_err(GenerateError::InvalidTemplate)?;
        let mut list: Vec<Machine> = Vec::new();
        let mut by_address = HashMap::new();
        for m in machines {
            let Some(addr) = m.address() else {
                tracing::warn!(serial = m.spec.serial, "ignoring a machine without an IPv4 address");
                continue;
            };
            match by_address.get(addr) {
                Some(&i) => list[i] = m.clone(),
                None => {
                    by_address.insert(addr.to_string(), list.len());
                    list.push(m.clone());
                }
            }
        }
        let mut node_taints = HashMap::new();
        if let Some(st) = status {
            // Nodes generated from machines have no host name: their Node's name is the address.
            for n in &st.kubernetes.nodes {
                if by_address.contains_key(&n.name) {
                    node_taints.insert(n.name.clone(), n.taints.clone());
                }
            }
        }
        let mut cp_tmpl = None;
        let mut worker_tmpls = Vec::new();
        for n in &template.nodes {
            let t = NodeTemplate {
                node: n.clone(),
                role: n.labels.get(CKE_LABEL_ROLE).cloned().unwrap_or_default(),
            };
            if n.control_plane {
                cp_tmpl = Some(t);
            } else {
                worker_tmpls.push(t);
            }
        }
        Ok(Generator {
            template,
            constraints,
            now,
            wait_seconds: DEFAULT_WAIT_RETIRED_SECONDS,
            machines: list,
            by_address,
            node_taints,
            cp_tmpl: cp_tmpl.expect("a validated template has a control-plane template"),
            worker_tmpls,
            next_unused: vec![],
            next_cps: vec![],
            next_workers: vec![],
            count_worker_by_role: BTreeMap::new(),
        })
    }

    /// Seconds a worker stays RETIRED before it is removed (default
    /// [`DEFAULT_WAIT_RETIRED_SECONDS`]).
    pub fn set_wait_seconds(&mut self, secs: f64) {
        self.wait_seconds = secs;
    }

    /// The machines considered, in sabakan's order.
    pub fn machines(&self) -> &[Machine] {
        &self.machines
    }

    /// Workers by machine role after the last generation (the `sabakan_workers` metric).
    pub fn workers_by_role(&self) -> &BTreeMap<String, i64> {
        &self.count_worker_by_role
    }

    /// Healthy machines left unused by the last generation (the `sabakan_unused_machines` metric).
    pub fn unused_machines(&self) -> usize {
        self.next_unused.len()
    }

    fn clear(&mut self) {
        self.next_unused.clear();
        self.next_cps.clear();
        self.next_workers.clear();
        self.count_worker_by_role.clear();
    }

    fn addr(&self, i: usize) -> &str {
        self.machines[i].address().unwrap_or_default()
    }

    fn healthy_by_role(&self, role: &str) -> usize {
        filter_healthy_by_role(&self.machines, role).len()
    }

    fn choose_worker_tmpl(&self) -> &NodeTemplate {
        let mut least = f64::MAX;
        let mut least_index = 0;
        for (i, t) in self.worker_tmpls.iter().enumerate() {
            let mut healthy = self.healthy_by_role(&t.role) as i64;
            if t.role == self.cp_tmpl.role {
                healthy -= self.next_cps.len() as i64;
            }
            if healthy <= 0 {
                continue;
            }
            let w = *self.count_worker_by_role.get(&t.role).unwrap_or(&0) as f64 / healthy as f64;
            if w < least {
                least = w;
                least_index = i;
            }
        }
        &self.worker_tmpls[least_index]
    }

    fn worker_tmpl(&self, i: usize) -> Result<&Node, GenerateError> {
        if self.worker_tmpls.len() == 1 {
            return Ok(&self.worker_tmpls[0].node);
        }
        let m = &self.machines[i];
        self.worker_tmpls
            .iter()
            .find(|t| t.role == m.spec.role)
            .map(|t| &t.node)
            .ok_or_else(|| GenerateError::NoTemplateForRole {
                role: m.spec.role.clone(),
                address: self.addr(i).to_string(),
            })
    }

    fn healthy_of_role(&self, candidates: &[usize], role: &str) -> Vec<usize> {
        candidates
            .iter()
            .copied()
            .filter(|i| {
                let m = &self.machines[*i];
                m.is_healthy() && (role.is_empty() || m.spec.role == role)
            })
            .collect()
    }

    /// The first healthy machine of `candidates` with the role of the worker template that has the
    /// fewest workers for its healthy machines.
    fn select_worker(&self, candidates: &[usize]) -> Option<usize> {
        let role = self.choose_worker_tmpl().role.clone();
        self.healthy_of_role(candidates, &role).first().copied()
    }

    /// The best control plane among `candidates`: healthy, of the control-plane role, not tainted
    /// in Kubernetes by others, spare machines first, highest score.
    fn select_control_plane(&self, candidates: &[usize]) -> Option<usize> {
        let mut cands: Vec<usize> = self
            .healthy_of_role(candidates, &self.cp_tmpl.role)
            .into_iter()
            .filter(|i| !self.is_tainted_in_cluster(*i))
            .collect();
        let spare: Vec<usize> = cands.iter().copied().filter(|i| self.is_spare(*i)).collect();
        if !spare.is_empty() {
            cands = spare;
        }
        let racks = self.count_cps_by_rack();
        // Highest first; a stable sort keeps sabakan's order among equals.
        cands.sort_by_key(|i| std::cmp::Reverse(score_machine(&self.machines[*i], &racks, self.now)));
        cands.first().copied()
    }

    /// The lowest-scored control plane, healthy ones last (the control planes are sorted so).
    fn deselect_control_plane(&mut self) -> usize {
        let racks = self.count_cps_by_rack();
        let (machines, now) = (&self.machines, self.now);
        self.next_cps
            .sort_by_key(|i| score_machine_with_health(&machines[*i], &racks, now));
        self.next_cps[0]
    }

    /// Control planes by rack.
    pub fn count_cps_by_rack(&self) -> HashMap<i64, i64> {
        let mut count = HashMap::new();
        for i in &self.next_cps {
            *count.entry(self.machines[*i].spec.rack).or_default() += 1;
        }
        count
    }

    fn spare_key(&self) -> &str {
        self.template
            .sabakan
            .as_ref()
            .map(|s| s.spare_node_taint_key.as_str())
            .unwrap_or("")
    }

    /// The machine's Node carries a taint that neither Kubernetes, cke, the spare-node key nor the
    /// template's `control_plane_tolerations` explain. Unknown Nodes are not tainted.
    fn is_tainted_in_cluster(&self, i: usize) -> bool {
        let Some(taints) = self.node_taints.get(self.addr(i)) else {
            return false;
        };
        let spare = self.spare_key();
        taints.iter().any(|t| {
            !(t.key.starts_with("node.kubernetes.io/")
                || t.key == STATE_TAINT_KEY
                || t.key == MASTER_TAINT_KEY
                || (!spare.is_empty() && t.key == spare)
                || self.template.control_plane_tolerations.contains(&t.key))
        })
    }

    fn is_spare(&self, i: usize) -> bool {
        let spare = self.spare_key();
        !spare.is_empty()
            && self
                .node_taints
                .get(self.addr(i))
                .is_some_and(|ts| ts.iter().any(|t| t.key == spare))
    }

    fn append_worker(&mut self, i: usize) {
        self.next_workers.push(i);
        *self
            .count_worker_by_role
            .entry(self.machines[i].spec.role.clone())
            .or_default() += 1;
    }

    fn remove_worker(&mut self, i: usize) {
        self.next_workers.retain(|w| *w != i);
        *self
            .count_worker_by_role
            .entry(self.machines[i].spec.role.clone())
            .or_default() -= 1;
    }

    fn take_unused(&mut self, i: usize) {
        self.next_unused.retain(|u| *u != i);
    }

    /// Healthy machines that are not among `used` addresses, in sabakan's order.
    fn unused_machines_except(&self, used: &HashSet<&str>) -> Vec<usize> {
        (0..self.machines.len())
            .filter(|i| self.machines[*i].is_healthy() && !used.contains(self.addr(*i)))
            .collect()
    }

    /// The machines of `nodes`, and the nodes with no machine.
    fn nodes_to_machines<'n>(&self, nodes: &[&'n Node]) -> (Vec<usize>, Vec<&'n Node>) {
        let mut found = vec![];
        let mut missing = vec![];
        for n in nodes {
            match self.by_address.get(&n.address) {
                Some(i) => found.push(*i),
                None => missing.push(*n),
            }
        }
        (found, missing)
    }

    /// Adds control planes (unused machines first, then promoted workers) and workers until the
    /// constraints and the healthy machines are satisfied, then builds and validates the declaration.
    fn fill(&mut self, mut op: UpdateOp) -> Result<Generated, GenerateError> {
        while (self.next_cps.len() as i64) < self.constraints.control_plane_count {
            if let Some(m) = self.select_control_plane(&self.next_unused) {
                op.record(format!("add new control plane: {}", self.addr(m)));
                self.next_cps.push(m);
                self.take_unused(m);
                continue;
            }
            // No unused machine: promote a redundant worker.
            if let Some(m) = self.select_control_plane(&self.next_workers) {
                op.record(format!("promote a worker: {}", self.addr(m)));
                self.next_cps.push(m);
                self.remove_worker(m);
                continue;
            }
            return Err(GenerateError::NotAvailable);
        }

        let mut available: i64 = 0;
        for t in &self.worker_tmpls {
            // A worker template without a role takes any machine.
            if t.role.is_empty() {
                available = self.healthy_by_role("") as i64 - self.next_cps.len() as i64;
                break;
            }
            available += self.healthy_by_role(&t.role) as i64;
            if t.role == self.cp_tmpl.role {
                available -= self.next_cps.len() as i64;
            }
        }
        while (self.next_workers.len() as i64) < available {
            let Some(m) = self.select_worker(&self.next_unused) else {
                return Err(GenerateError::NotAvailable);
            };
            op.record(format!("add new worker: {}", self.addr(m)));
            self.append_worker(m);
            self.take_unused(m);
        }

        let mut nodes = Vec::with_capacity(self.next_cps.len() + self.next_workers.len());
        for i in &self.next_cps {
            nodes.push(machine_to_node(&self.machines[*i], &self.cp_tmpl.node));
        }
        for i in &self.next_workers {
            nodes.push(machine_to_node(&self.machines[*i], self.worker_tmpl(*i)?));
        }
        let mut cluster = self.template.clone();
        cluster.nodes = nodes;
        cluster.validate().map_err(GenerateError::Invalid)?;
        Ok(Generated { cluster, op })
    }

    /// A new declaration: `control-plane-count` control planes, and every other healthy machine of
    /// the worker templates' roles as a worker.
    pub fn generate(&mut self) -> Result<Generated, GenerateError> {
        self.clear();
        let mut op = UpdateOp::new("new");
        op.record("generate new cluster");
        self.next_unused = self.unused_machines_except(&HashSet::new());
        self.fill(op)
    }

    /// The same machines in the same roles under a new template (nothing else may have changed).
    pub fn regenerate(&mut self, current: &Cluster) -> Result<Generated, GenerateError> {
        self.clear();
        let cps: Vec<&Node> = current.control_planes().collect();
        let workers: Vec<&Node> = current.workers().collect();
        let (next_cps, missing_cps) = self.nodes_to_machines(&cps);
        let (next_workers, missing_workers) = self.nodes_to_machines(&workers);
        let missing: Vec<String> = missing_cps
            .iter()
            .chain(&missing_workers)
            .map(|n| n.address.clone())
            .collect();
        if !missing.is_empty() {
            return Err(GenerateError::MissingMachine { addresses: missing });
        }
        self.next_cps = next_cps;
        for m in next_workers {
            self.append_worker(m);
        }
        let used: HashSet<&str> = current.nodes.iter().map(|n| n.address.as_str()).collect();
        self.next_unused = self.unused_machines_except(&used);
        let mut op = UpdateOp::new("regenerate");
        op.record("regenerate with new template");
        self.fill(op)
    }

    /// The current declaration changed by the first rule that applies, or `None` when none does.
    pub fn update(&mut self, current: &Cluster) -> Result<Option<Generated>, GenerateError> {
        self.clear();
        let cps: Vec<&Node> = current.control_planes().collect();
        let workers: Vec<&Node> = current.workers().collect();

        let steps: [UpdateRule<'a>; 6] = [
            Self::remove_non_existent,
            Self::increase_control_planes,
            Self::decrease_control_planes,
            Self::increase_workers,
            Self::decrease_workers,
            Self::taint_nodes,
        ];
        for step in steps {
            if let Some(op) = step(self, &cps, &workers)? {
                return self.fill(op).map(Some);
            }
        }
        Ok(None)
    }

    fn remove_non_existent(&mut self, cps: &[&Node], workers: &[&Node]) -> Result<Option<UpdateOp>, GenerateError> {
        let mut op = UpdateOp::new("remove non-existent node");
        let (next_cps, missing_cps) = self.nodes_to_machines(cps);
        if next_cps.len() * 2 <= cps.len() {
            // Replacing half of the control planes or more would break the managed etcd.
            return Err(GenerateError::TooManyNonExistent {
                current: cps.len(),
                remaining: next_cps.len(),
            });
        }
        for n in missing_cps {
            op.record(format!("remove non-existent control plane: {}", n.address));
        }
        self.next_cps = next_cps;
        let (next_workers, missing_workers) = self.nodes_to_machines(workers);
        for n in missing_workers {
            op.record(format!("remove non-existent worker: {}", n.address));
        }
        for m in next_workers {
            self.append_worker(m);
        }
        let used: HashSet<&str> = cps.iter().chain(workers).map(|n| n.address.as_str()).collect();
        self.next_unused = self.unused_machines_except(&used);
        Ok((!op.changes.is_empty()).then_some(op))
    }

    fn increase_control_planes(&mut self, _: &[&Node], _: &[&Node]) -> Result<Option<UpdateOp>, GenerateError> {
        if self.next_cps.len() as i64 >= self.constraints.control_plane_count {
            return Ok(None);
        }
        Ok(Some(UpdateOp::new("increase control plane")))
    }

    fn decrease_control_planes(&mut self, _: &[&Node], _: &[&Node]) -> Result<Option<UpdateOp>, GenerateError> {
        if self.next_cps.len() as i64 <= self.constraints.control_plane_count {
            return Ok(None);
        }
        let mut op = UpdateOp::new("decrease control plane");
        while self.next_cps.len() as i64 > self.constraints.control_plane_count {
            let m = self.deselect_control_plane();
            self.next_cps.retain(|c| *c != m);
            op.record(format!("demote a control plane: {}", self.addr(m)));
            self.append_worker(m);
        }
        Ok(Some(op))
    }

    fn increase_workers(&mut self, _: &[&Node], _: &[&Node]) -> Result<Option<UpdateOp>, GenerateError> {
        let healthy_workers = self
            .next_workers
            .iter()
            .filter(|i| self.machines[**i].is_healthy())
            .count() as i64;
        let available = self.healthy_by_role("") as i64 - self.next_cps.len() as i64;
        if healthy_workers >= available {
            return Ok(None);
        }
        let mut op = UpdateOp::new("increase worker");
        for _ in healthy_workers..available {
            let Some(m) = self.select_worker(&self.next_unused) else {
                break;
            };
            op.record(format!("add new worker: {}", self.addr(m)));
            self.append_worker(m);
            self.take_unused(m);
        }
        Ok((!op.changes.is_empty()).then_some(op))
    }

    fn decrease_workers(&mut self, _: &[&Node], _: &[&Node]) -> Result<Option<UpdateOp>, GenerateError> {
        let Some(retired) = self.next_workers.iter().copied().find(|i| {
            let m = &self.machines[*i];
            m.status.state == MachineState::Retired && m.status.duration > self.wait_seconds
        }) else {
            return Ok(None);
        };
        // Never below minimum-workers-rate percent of the machines.
        let rate = (self.next_workers.len() as f64 - 1.0) / self.machines.len() as f64 * 100.0;
        if rate < self.constraints.minimum_workers_rate as f64 {
            return Ok(None);
        }
        let mut op = UpdateOp::new("decrease worker");
        op.record(format!("remove retired worker: {}", self.addr(retired)));
        self.remove_worker(retired);
        Ok(Some(op))
    }

    fn taint_nodes(&mut self, cps: &[&Node], workers: &[&Node]) -> Result<Option<UpdateOp>, GenerateError> {
        let mut op = UpdateOp::new("taint nodes");
        for n in cps.iter().chain(workers) {
            // Every node has its machine here: vanished ones were handled first.
            let Some(&i) = self.by_address.get(&n.address) else {
                continue;
            };
            if !has_valid_taint(n, &self.machines[i]) {
                op.record(format!("change taint of {}", n.address));
            }
        }
        Ok((!op.changes.is_empty()).then_some(op))
    }
}

/// The node's first `cke.cybozu.com/state` taint is the one its machine's state calls for (none
/// for the other states).
pub fn has_valid_taint(n: &Node, m: &Machine) -> bool {
    let taint = n.taints.iter().find(|t| t.key == STATE_TAINT_KEY);
    match (state_taint(m.status.state), taint) {
        (Some((value, effect)), Some(t)) => t.value == value && t.effect == effect,
        (Some(_), None) => false,
        (None, t) => t.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KubeNode, KubernetesStatus};
    use chrono::TimeZone;

    fn machine(ip: Option<&str>, serial: &str, state: MachineState) -> Machine {
        let date = Utc.with_ymd_and_hms(2019, 12, 2, 0, 0, 0).unwrap();
        Machine {
            spec: crate::sabakan::machine::MachineSpec {
                serial: serial.into(),
                labels: vec![],
                rack: 0,
                index_in_rack: 0,
                role: "cs".into(),
                ipv4: ip.map(|a| vec![a.to_string()]).unwrap_or_default(),
                register_date: date,
                retire_date: date,
                bmc: Default::default(),
            },
            status: crate::sabakan::machine::MachineStatus { state, duration: 0.0 },
        }
    }

    fn template() -> Cluster {
        let mut t = Cluster::new(
            "t",
            "10.0.0.0/14",
            vec![Node::new("", "cybozu", true), Node::new("", "cybozu", false)],
        );
        t.control_plane_tolerations = vec!["tolerated".into()];
        t
    }

    /// CKE's testNewGenerator: machines without an address are left out, one machine per address,
    /// and only the Nodes of machines count.
    #[test]
    fn new_generator_keeps_one_machine_per_address() {
        let t = template();
        let machines = [
            machine(Some("10.0.0.1"), "a", MachineState::Healthy),
            machine(None, "no-address", MachineState::Healthy),
            machine(Some("10.0.0.2"), "b", MachineState::Healthy),
            machine(Some("10.0.0.1"), "a2", MachineState::Unhealthy),
        ];
        let status = ClusterStatus {
            kubernetes: KubernetesStatus {
                nodes: vec![
                    KubeNode {
                        name: "10.0.0.2".into(),
                        taints: vec![Taint {
                            key: "someone/else".into(),
                            value: String::new(),
                            effect: "NoSchedule".into(),
                        }],
                        ..Default::default()
                    },
                    KubeNode {
                        name: "10.9.9.9".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            ..Default::default()
        };
        let now = Utc.with_ymd_and_hms(2018, 12, 2, 0, 0, 0).unwrap();
        let mut g = Generator::new(&t, Constraints::default(), &machines, Some(&status), now).unwrap();
        let serials: Vec<&str> = g.machines().iter().map(|m| m.spec.serial.as_str()).collect();
        assert_eq!(serials, ["a2", "b"]);
        assert_eq!(g.node_taints.keys().collect::<Vec<_>>(), ["10.0.0.2"]);
        // 10.0.0.1 is unhealthy now; 10.0.0.2 is tainted by someone else: no control plane.
        assert!(matches!(g.generate(), Err(GenerateError::NotAvailable)));
    }

    #[test]
    fn an_invalid_template_is_refused() {
        let mut t = template();
        t.nodes.pop();
        let now = Utc::now();
        assert!(matches!(
            Generator::new(&t, Constraints::default(), &[], None, now),
            Err(GenerateError::InvalidTemplate(_))
        ));
    }
}
