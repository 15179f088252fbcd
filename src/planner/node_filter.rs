//! Queries over the declaration and the probed status (CKE's node filter). Pure.

use crate::model::{Cluster, ClusterStatus, Node, NodeStatus, ServiceStatus};

use super::params::*;
use super::PlanInputs;

/// Answers "which nodes ..." questions for the planner.
pub struct NodeFilter<'a> {
    cluster: &'a Cluster,
    status: &'a ClusterStatus,
    inputs: &'a PlanInputs,
    unknown: NodeStatus,
    now: chrono::DateTime<chrono::Utc>,
}

impl<'a> NodeFilter<'a> {
    /// A filter over this declaration and status.
    pub fn new(cluster: &'a Cluster, status: &'a ClusterStatus, inputs: &'a PlanInputs) -> Self {
        NodeFilter {
            cluster,
            status,
            inputs,
            unknown: NodeStatus::default(),
            now: chrono::DateTime::UNIX_EPOCH,
        }
    }

    /// The same filter at time `now` (the planner's input; the epoch unless set).
    pub fn at(mut self, now: chrono::DateTime<chrono::Utc>) -> Self {
        self.now = now;
        self
    }

    /// The time the plan is made at.
    pub(super) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.now
    }

    pub(super) fn node_status(&self, n: &Node) -> &NodeStatus {
        self.status.nodes.get(&n.address).unwrap_or(&self.unknown)
    }

    pub(super) fn reachable(&self, n: &Node) -> bool {
        self.node_status(n).ssh_connected
    }

    pub(super) fn cluster(&self) -> &'a Cluster {
        self.cluster
    }

    pub(super) fn status(&self) -> &'a ClusterStatus {
        self.status
    }

    pub(super) fn inputs(&self) -> &'a PlanInputs {
        self.inputs
    }

    /// The version set of the Kubernetes image, or a note naming the image.
    pub(super) fn kube_version(&self) -> Result<&'static crate::k8s::VersionSet, String> {
        crate::k8s::VersionSet::for_image(&self.inputs.images.kubernetes)
            .map(|r| r.set)
            .map_err(|e| format!("no Kubernetes component is started or updated: {e}"))
    }

    /// Nodes per batch of rivers, etcd-rivers, kubelet and kube-proxy changes (at least 1).
    pub(super) fn max_concurrent_updates(&self) -> usize {
        self.inputs.max_concurrent_updates.max(1)
    }

    fn control_planes(&self) -> Vec<&'a Node> {
        self.cluster.control_planes().collect()
    }

    /// Control-plane addresses in declaration order.
    pub fn control_plane_addresses(&self) -> Vec<String> {
        self.cluster.control_planes().map(|n| n.address.clone()).collect()
    }

    /// Control-plane nodes SSH cannot reach.
    pub fn unreachable_control_planes(&self) -> Vec<String> {
        self.cluster
            .control_planes()
            .filter(|n| !self.reachable(n))
            .map(|n| n.address.clone())
            .collect()
    }

    fn declared(&self, address: &str) -> Option<&'a Node> {
        self.cluster.node(address)
    }

    /// Reachable nodes (control planes only when `etcd`) where rivers (etcd-rivers) is not running.
    pub fn rivers_stopped(&self, etcd: bool) -> Vec<String> {
        self.rivers_nodes(etcd)
            .filter(|n| !self.rivers_status(n, etcd).running)
            .map(|n| n.address.clone())
            .collect()
    }

    /// Reachable nodes where rivers (etcd-rivers) runs with an outdated image or params.
    pub fn rivers_outdated(&self, etcd: bool) -> Vec<String> {
        let cps = self.control_planes();
        let (builtin, extra) = if etcd {
            (
                rivers_builtin_params(&cps, ETCD_CLIENT_PORT, ETCD_RIVERS_LISTEN_PORT),
                &self.cluster.options.etcd_rivers,
            )
        } else {
            (
                rivers_builtin_params(&cps, API_SERVER_PORT, RIVERS_LISTEN_PORT),
                &self.cluster.options.rivers,
            )
        };
        self.rivers_nodes(etcd)
            .filter(|n| {
                let st = self.rivers_status(n, etcd);
                st.running && outdated(st, &self.inputs.images.tools, &builtin, extra)
            })
            .map(|n| n.address.clone())
            .collect()
    }

    fn rivers_nodes(&self, etcd: bool) -> impl Iterator<Item = &'a Node> + '_ {
        self.cluster
            .nodes
            .iter()
            .filter(move |n| (!etcd || n.control_plane) && self.reachable(n))
    }

    fn rivers_status(&self, n: &Node, etcd: bool) -> &ServiceStatus {
        let st = self.node_status(n);
        if etcd {
            &st.etcd_rivers
        } else {
            &st.rivers
        }
    }

    /// True when the managed etcd answers with members, or any declared node, control plane or
    /// worker, holds a marked member's data (or any etcd data, once the management etcd records that
    /// the managed etcd ran): a declaration that moves the control plane to other nodes never
    /// bootstraps a new, empty cluster while the old members are still declared. Data volumes
    /// without a marker and without that record are what a bootstrap interrupted before any member
    /// answered leaves; bootstrapping again is harmless then (etcd keeps a data directory it finds),
    /// but only when it repeats the same bootstrap — the nodes with data are exactly the control
    /// planes — or no member was ever started (no etcd container anywhere). Otherwise new nodes could
    /// form a second, empty cluster beside the old data; that counts as bootstrapped (and waits).
    pub fn etcd_bootstrapped(&self) -> bool {
        let before = self.inputs.etcd_bootstrapped_before;
        if !self.status.etcd.members.is_empty() {
            return true;
        }
        let st = |n: &Node| &self.node_status(n).etcd;
        if self
            .cluster
            .nodes
            .iter()
            .any(|n| st(n).has_data && (st(n).is_added_member || before))
        {
            return true;
        }
        if !self.cluster.nodes.iter().any(|n| st(n).has_data) {
            return false;
        }
        let same_bootstrap = self.cluster.nodes.iter().all(|n| n.control_plane == st(n).has_data);
        let never_started = self.cluster.nodes.iter().all(|n| !st(n).service.exists);
        !(same_bootstrap || never_started)
    }

    /// For CKE's `upgrade` to `config-version` "2": the reachable control-plane nodes whose started
    /// member (named in the member list) has its data there but no added-member marker, and the
    /// unreachable control-plane nodes with a started member (whose marker cannot be checked).
    /// CKE marks every control plane; a marker on a node without a joined member's data would make
    /// a later, interrupted bootstrap or join look complete, so cke marks only these.
    pub fn etcd_upgrade_marks(&self) -> (Vec<String>, Vec<String>) {
        let e = &self.status.etcd;
        let (mut mark, mut unreachable) = (vec![], vec![]);
        for n in self.cluster.control_planes() {
            if e.members.get(&n.address).is_none_or(|m| m.name.is_empty()) {
                continue;
            }
            let st = &self.node_status(n).etcd;
            if !self.reachable(n) {
                unreachable.push(n.address.clone());
            } else if st.has_data && !st.is_added_member {
                mark.push(n.address.clone());
            }
        }
        (mark, unreachable)
    }

    /// True when the managed etcd is healthy and every member is in sync.
    pub fn etcd_is_good(&self) -> bool {
        let e = &self.status.etcd;
        e.is_healthy && e.members.keys().all(|a| e.in_sync_members.contains(a))
    }

    /// Good enough to repair machines (CKE's `EtcdIsGoodForRepair`): healthy, every member that is not
    /// in sync is on a declared control plane that SSH cannot reach (the failure being repaired), and
    /// at least `control_plane_count - 1` members are in sync.
    pub fn etcd_is_good_for_repair(&self, control_plane_count: i64) -> bool {
        let e = &self.status.etcd;
        if !e.is_healthy {
            return false;
        }
        let mut in_sync = 0;
        for address in e.members.keys() {
            if e.in_sync_members.contains(address) {
                in_sync += 1;
                continue;
            }
            match self.declared(address) {
                Some(n) if n.control_plane && !self.reachable(n) => {}
                _ => return false,
            }
        }
        in_sync >= control_plane_count - 1
    }

    /// Reachable control-plane nodes whose member is stopped but holds data and was fully added.
    /// When the cluster is healthy, only nodes that are members count.
    pub fn etcd_stopped_members(&self) -> Vec<String> {
        let e = &self.status.etcd;
        self.cluster
            .control_planes()
            .filter(|n| self.reachable(n))
            .filter(|n| !e.is_healthy || e.members.contains_key(&n.address))
            .filter(|n| {
                let st = &self.node_status(n).etcd;
                !st.service.running && st.has_data && st.is_added_member
            })
            .map(|n| n.address.clone())
            .collect()
    }

    /// Members on undeclared nodes, in sync or not as asked: (address, id).
    pub fn etcd_non_cluster_members(&self, in_sync: bool) -> Vec<(String, u64)> {
        let e = &self.status.etcd;
        e.members
            .iter()
            .filter(|(a, _)| self.declared(a).is_none())
            .filter(|(a, _)| e.in_sync_members.contains(*a) == in_sync)
            .map(|(a, m)| (a.clone(), m.id))
            .collect()
    }

    /// Members on declared nodes that are no longer control plane: (address, id).
    pub fn etcd_non_cp_members(&self, in_sync: bool) -> Vec<(String, u64)> {
        let e = &self.status.etcd;
        e.members
            .iter()
            .filter(|(a, _)| self.declared(a).is_some_and(|n| !n.control_plane))
            .filter(|(a, _)| e.in_sync_members.contains(*a) == in_sync)
            .map(|(a, m)| (a.clone(), m.id))
            .collect()
    }

    /// Reachable declared nodes that are not control planes and not members, but hold etcd data or
    /// the added-member marker: what a member removed while its node was unreachable leaves (or a
    /// wipe that failed halfway). Only while the managed etcd is healthy, so that its member list
    /// is known; the wipe itself refuses a node that the member list names.
    pub fn etcd_leftovers(&self) -> Vec<String> {
        let e = &self.status.etcd;
        if !e.is_healthy {
            return vec![];
        }
        self.cluster
            .nodes
            .iter()
            .filter(|n| !n.control_plane && self.reachable(n))
            .filter(|n| !e.members.contains_key(&n.address))
            .filter(|n| {
                let st = &self.node_status(n).etcd;
                st.has_data || st.is_added_member
            })
            .map(|n| n.address.clone())
            .collect()
    }

    /// True when the managed etcd lists a member on `address`.
    pub fn etcd_is_member(&self, address: &str) -> bool {
        self.status.etcd.members.contains_key(address)
    }

    /// Members on reachable control-plane nodes that were added but never completed their join, with
    /// why: (address, id, reason). They are removed and added again. Half-added are
    /// - voting members that never started (no name), whatever their container reports: a voter
    ///   only joins unstarted when CKE (or a person) added it, and a container that runs but never
    ///   gave it a name runs with flags that do not join it (a wrong `--initial-cluster`, say);
    /// - learners that never started and whose container does not run (a learner whose container
    ///   runs may still be catching up: it gets its name once it has);
    /// - members that are not marked and whose container does not run.
    ///
    /// A member in sync is never half-added, whatever its node reports.
    pub fn etcd_half_added_members(&self) -> Vec<(String, u64, String)> {
        let e = &self.status.etcd;
        e.members
            .iter()
            .filter(|(a, _)| self.declared(a).is_some_and(|n| n.control_plane && self.reachable(n)))
            .filter(|(a, _)| !e.in_sync_members.contains(*a))
            .filter_map(|(a, m)| {
                let st = self.status.nodes.get(a).map(|s| &s.etcd);
                let marked = st.is_some_and(|s| s.is_added_member);
                let running = st.is_some_and(|s| s.service.running);
                let id = m.id;
                let reason = if m.name.is_empty() && !m.is_learner && running {
                    format!(
                        "voting member {id:x} on {a} never started (it has no name) although its etcd \
                         container runs: that container does not join it (wrong flags?); it is removed \
                         and added again as a learner"
                    )
                } else if !running && (m.name.is_empty() || !marked) {
                    format!("member {id:x} on {a} was added but never completed its join")
                } else {
                    return None;
                };
                Some((a.clone(), id, reason))
            })
            .collect()
    }

    /// Learners on control-plane nodes that have not started (no name) while their container runs:
    /// left to catch up (they get their name once they have), but they hold every change after the
    /// health gate.
    pub fn etcd_starting_learners(&self) -> Vec<String> {
        let e = &self.status.etcd;
        e.members
            .iter()
            .filter(|(_, m)| m.is_learner && m.name.is_empty())
            .filter(|(a, _)| self.declared(a).is_some_and(|n| n.control_plane))
            .filter(|(a, _)| self.status.nodes.get(*a).is_some_and(|s| s.etcd.service.running))
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// In-sync voting members on control-plane nodes that lack the added-member marker.
    pub fn etcd_unmarked_members(&self) -> Vec<String> {
        let e = &self.status.etcd;
        e.members
            .iter()
            .filter(|(a, m)| !m.is_learner && !m.name.is_empty() && e.in_sync_members.contains(*a))
            .filter(|(a, _)| self.declared(a).is_some_and(|n| n.control_plane))
            .filter(|(a, _)| {
                self.status
                    .nodes
                    .get(*a)
                    .is_some_and(|s| s.ssh_connected && s.etcd.service.running && !s.etcd.is_added_member)
            })
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Started learners on control-plane nodes that are in sync: (address, id).
    pub fn etcd_promotable_learners(&self) -> Vec<(String, u64)> {
        let e = &self.status.etcd;
        e.members
            .iter()
            .filter(|(a, m)| m.is_learner && !m.name.is_empty() && e.in_sync_members.contains(*a))
            .filter(|(a, _)| self.declared(a).is_some_and(|n| n.control_plane))
            .map(|(a, m)| (a.clone(), m.id))
            .collect()
    }

    /// Control-plane nodes that are not members.
    pub fn etcd_new_members(&self) -> Vec<String> {
        self.cluster
            .control_planes()
            .filter(|n| !self.status.etcd.members.contains_key(&n.address))
            .map(|n| n.address.clone())
            .collect()
    }

    /// Control-plane nodes running etcd without the declared data volume (`options.etcd.volume_name`
    /// changed after the members were created). They are never restarted: on the new, empty volume
    /// the member could not start.
    pub fn etcd_running_without_volume(&self) -> Vec<String> {
        self.cluster
            .control_planes()
            .filter(|n| {
                let st = &self.node_status(n).etcd;
                self.reachable(n) && st.service.running && !st.has_data
            })
            .map(|n| n.address.clone())
            .collect()
    }

    /// Control-plane nodes running etcd with an outdated image or params (`--initial-*` ignored),
    /// on the declared data volume.
    pub fn etcd_outdated_members(&self) -> Vec<String> {
        let volume = self.cluster.options.etcd.volume();
        let extra = self.cluster.options.etcd.service_params();
        self.cluster
            .control_planes()
            .filter(|n| {
                let st = &self.node_status(n).etcd.service;
                if !st.running || !self.node_status(n).etcd.has_data {
                    return false;
                }
                let builtin = etcd_builtin_params(n, volume, None);
                match &st.params {
                    None => true,
                    Some(p) => {
                        st.image != self.inputs.images.etcd
                            || without_initial_args(&p.builtin) != without_initial_args(&builtin)
                            || without_initial_args(&p.extra) != without_initial_args(&extra)
                    }
                }
            })
            .map(|n| n.address.clone())
            .collect()
    }

    /// True when the voting members other than `address` that are in sync still form a quorum of
    /// all voting members. Clusters of one or two voting members tolerate no failure and cannot keep
    /// quorum through any restart; their members are restarted anyway when every member is in sync
    /// (a short outage, no data loss), or they could never be updated.
    pub fn etcd_restart_keeps_quorum(&self, address: &str) -> bool {
        let e = &self.status.etcd;
        let voting: Vec<&String> = e
            .members
            .iter()
            .filter(|(_, m)| !m.is_learner)
            .map(|(a, _)| a)
            .collect();
        if voting.len() <= 2 {
            return voting.iter().all(|a| e.in_sync_members.contains(*a)) && voting.iter().any(|a| *a == address);
        }
        let others_in_sync = voting
            .iter()
            .filter(|a| a.as_str() != address && e.in_sync_members.contains(**a))
            .count();
        others_in_sync > voting.len() / 2
    }

    /// True when etcd maintenance has something it would like to do (used to explain a wait).
    pub fn etcd_maintenance_wanted(&self) -> bool {
        !self.etcd_new_members().is_empty()
            || !self.etcd_non_cluster_members(true).is_empty()
            || !self.etcd_non_cluster_members(false).is_empty()
            || !self.etcd_non_cp_members(true).is_empty()
            || !self.etcd_non_cp_members(false).is_empty()
            || !self.etcd_outdated_members().is_empty()
            || !self.etcd_leftovers().is_empty()
    }
}

fn outdated(
    st: &ServiceStatus,
    image: &str,
    builtin: &crate::model::ServiceParams,
    extra: &crate::model::ServiceParams,
) -> bool {
    match &st.params {
        None => true,
        Some(p) => st.image != image || &p.builtin != builtin || &p.extra != extra,
    }
}
