//! The labels, annotations and taints cke keeps on each `Node` object, exactly as CKE keeps them
//! (`server/node_filter.go`: `isInternal`, `nodeIsOutdated`, `OutdatedAttrsNodes`). Pure: the
//! planner asks [`is_outdated`], the Kubernetes client computes the object to write with
//! [`desired`] from the Node it has just read.
//!
//! The rule:
//! - every label, annotation and taint of the node's declaration must be on the Node with the same
//!   value (a taint: same key, value and effect);
//! - *CKE-internal* keys ([`is_internal`]) on the Node that the declaration does not have are
//!   removed; every other key is kept, never removed;
//! - the label `cke.cybozu.com/master=true` is on control planes, and only on them;
//! - the taint `cke.cybozu.com/master:PreferNoSchedule` is on control planes when the cluster has
//!   `taint_control_plane`, and on no other Node (its value is not compared).

use std::collections::BTreeMap;

use crate::model::{KubeNode, Node, Taint};

/// The label CKE puts on control planes (value `true`).
pub const MASTER_LABEL: &str = "cke.cybozu.com/master";
/// The taint CKE puts on control planes with `taint_control_plane` (`PreferNoSchedule`).
pub const MASTER_TAINT: &str = "cke.cybozu.com/master";
/// The annotation of a Node cordoned for a reboot: CKE-named but not internal (the reboot queue
/// owns it).
pub const REBOOT_ANNOTATION: &str = "cke.cybozu.com/reboot";
/// The effect of [`MASTER_TAINT`].
pub const MASTER_TAINT_EFFECT: &str = "PreferNoSchedule";

/// The attributes cke writes on a Node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAttrs {
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec.taints`, in the order CKE writes them: the declared ones, the kept ones, the master
    /// taint.
    pub taints: Vec<Taint>,
}

/// A key cke owns on `node`'s Node (CKE's `isInternal`): `cke.cybozu.com/*` but
/// `cke.cybozu.com/reboot`, `*.cke.cybozu.com/*`, `node-role.kubernetes.io/master`,
/// `node-role.kubernetes.io/control-plane`, and `node-role.kubernetes.io/*` keys that the node's
/// declared labels have.
pub fn is_internal(key: &str, node: &Node) -> bool {
    if key == REBOOT_ANNOTATION {
        return false;
    }
    if key.starts_with("cke.cybozu.com/") || key.contains(".cke.cybozu.com/") {
        return true;
    }
    if key.starts_with("node-role.kubernetes.io/") && node.labels.contains_key(key) {
        return true;
    }
    key == "node-role.kubernetes.io/master" || key == "node-role.kubernetes.io/control-plane"
}

/// `current` lacks something the declaration of `node` wants, or has a CKE-internal key it does not
/// want (CKE's `nodeIsOutdated`). `taint_control_plane` is the cluster's.
pub fn is_outdated(node: &Node, current: &KubeNode, taint_control_plane: bool) -> bool {
    // Labels: declared ones present with their values; internal ones only when declared.
    if node.labels.iter().any(|(k, v)| current.labels.get(k) != Some(v)) {
        return true;
    }
    if current
        .labels
        .keys()
        .any(|k| is_internal(k, node) && k != MASTER_LABEL && !node.labels.contains_key(k))
    {
        return true;
    }
    let master = current.labels.get(MASTER_LABEL);
    if node.control_plane {
        if master.map(String::as_str) != Some("true") {
            return true;
        }
    } else if master.is_some() {
        return true;
    }

    // Annotations.
    if node
        .annotations
        .iter()
        .any(|(k, v)| current.annotations.get(k) != Some(v))
    {
        return true;
    }
    if current
        .annotations
        .keys()
        .any(|k| is_internal(k, node) && !node.annotations.contains_key(k))
    {
        return true;
    }

    // Taints, by key (the last of a key wins, as in CKE's map).
    let current_taints: BTreeMap<&str, &Taint> = current.taints.iter().map(|t| (t.key.as_str(), t)).collect();
    for t in &node.taints {
        match current_taints.get(t.key.as_str()) {
            Some(c) if c.value == t.value && c.effect == t.effect => {}
            _ => return true,
        }
    }
    if current
        .taints
        .iter()
        .any(|t| is_internal(&t.key, node) && t.key != MASTER_TAINT && !node.taints.iter().any(|d| d.key == t.key))
    {
        return true;
    }
    let master = current_taints.get(MASTER_TAINT);
    if taint_control_plane && node.control_plane {
        if master.is_none_or(|t| t.effect != MASTER_TAINT_EFFECT) {
            return true;
        }
    } else if master.is_some() {
        return true;
    }
    false
}

/// The attributes to write on `current` for `node` (CKE's `OutdatedAttrsNodes`): the existing
/// non-internal labels and annotations with the declared ones laid over them, plus
/// `cke.cybozu.com/master=true` on a control plane; the declared taints, then the existing taints
/// that are neither internal nor declared (a declared taint replaces the Node's taint of its key),
/// then the master taint on a control plane with `taint_control_plane`.
pub fn desired(node: &Node, current: &KubeNode, taint_control_plane: bool) -> NodeAttrs {
    let keep = |m: &BTreeMap<String, String>, declared: &BTreeMap<String, String>| {
        let mut out: BTreeMap<String, String> = m
            .iter()
            .filter(|(k, _)| !is_internal(k, node))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.extend(declared.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    };
    let mut labels = keep(&current.labels, &node.labels);
    if node.control_plane {
        labels.insert(MASTER_LABEL.into(), "true".into());
    }
    let annotations = keep(&current.annotations, &node.annotations);
    let mut taints = node.taints.clone();
    taints.extend(
        current
            .taints
            .iter()
            .filter(|t| !is_internal(&t.key, node) && !node.taints.iter().any(|d| d.key == t.key))
            .cloned(),
    );
    if taint_control_plane && node.control_plane {
        taints.push(Taint {
            key: MASTER_TAINT.into(),
            value: String::new(),
            effect: MASTER_TAINT_EFFECT.into(),
        });
    }
    NodeAttrs {
        labels,
        annotations,
        taints,
    }
}

/// What [`desired`] changes on `current`, in words, for `/status` and `ckecli plan`: `label k=v`,
/// `remove label k`, the same for annotations, `taint k=v:Effect`, `remove taint k=v:Effect`
/// (a taint without value is `k:Effect`). Empty when the Node is as desired.
pub fn changes(node: &Node, current: &KubeNode, taint_control_plane: bool) -> Vec<String> {
    let want = desired(node, current, taint_control_plane);
    let mut out = Vec::new();
    for (what, now, then) in [
        ("label", &current.labels, &want.labels),
        ("annotation", &current.annotations, &want.annotations),
    ] {
        out.extend(
            then.iter()
                .filter(|(k, v)| now.get(*k) != Some(v))
                .map(|(k, v)| format!("{what} {k}={v}")),
        );
        out.extend(
            now.keys()
                .filter(|k| !then.contains_key(*k))
                .map(|k| format!("remove {what} {k}")),
        );
    }
    let show = |t: &Taint| match t.value.as_str() {
        "" => format!("{}:{}", t.key, t.effect),
        v => format!("{}={v}:{}", t.key, t.effect),
    };
    out.extend(
        want.taints
            .iter()
            .filter(|t| !current.taints.contains(t))
            .map(|t| format!("taint {}", show(t))),
    );
    out.extend(
        current
            .taints
            .iter()
            .filter(|t| !want.taints.contains(t))
            .map(|t| format!("remove taint {}", show(t))),
    );
    out
}

/// The Node of `node` as cke keeps it when nobody else has touched it: ready, with exactly the
/// attributes [`desired`] gives from none. What a converged cluster looks like (tests, fakes).
pub fn as_kept(node: &Node, taint_control_plane: bool) -> KubeNode {
    let empty = KubeNode {
        name: node.nodename().into(),
        ready: true,
        ..Default::default()
    };
    desired(node, &empty, taint_control_plane).apply_to(&empty)
}

impl NodeAttrs {
    /// `node` with these attributes.
    pub fn apply_to(&self, node: &KubeNode) -> KubeNode {
        KubeNode {
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            taints: self.taints.clone(),
            ..node.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        }
    }

    /// CKE's `newData()` worker 10.0.0.14.
    fn worker() -> Node {
        let mut n = Node::new("10.0.0.14", "cybozu", false);
        n.labels = map(&[("label1", "value"), ("node-role.kubernetes.io/worker", "true")]);
        n.annotations = map(&[("annotation1", "value")]);
        n.taints = vec![
            taint("taint1", "value1", "NoSchedule"),
            taint("taint2", "", "PreferNoSchedule"),
        ];
        n
    }

    fn control_plane() -> Node {
        Node::new("10.0.0.11", "cybozu", true)
    }

    /// The Node of `n` as CKE's `withK8sNodes` registers it: exactly as declared.
    fn as_declared(n: &Node) -> KubeNode {
        as_kept(n, false)
    }

    #[test]
    fn internal_keys_are_ckes() {
        let w = worker();
        for k in [
            "cke.cybozu.com/master",
            "cke.cybozu.com/foo",
            "sabakan.cke.cybozu.com/foo",
            "node-role.kubernetes.io/master",
            "node-role.kubernetes.io/control-plane",
            "node-role.kubernetes.io/worker",
        ] {
            assert!(is_internal(k, &w), "{k}");
        }
        for k in [
            "cke.cybozu.com/reboot",
            "node-role.kubernetes.io/hoge",
            "example.com/cke.cybozu.com",
            "label1",
        ] {
            assert!(!is_internal(k, &w), "{k}");
        }
        // node-role keys are internal only where declared.
        assert!(!is_internal("node-role.kubernetes.io/worker", &control_plane()));
    }

    #[test]
    fn outdated_as_in_ckes_strategy_cases() {
        let w = worker();
        let base = as_declared(&w);
        assert!(!is_outdated(&w, &base, false));
        type Change = Box<dyn Fn(&mut KubeNode)>;
        let cases: Vec<(&str, Change, bool)> = vec![
            ("NodeLabel1", Box::new(|k| k.labels.clear()), true),
            (
                "NodeLabel2",
                Box::new(|k| {
                    k.labels.insert("label1".into(), "wrongvalue".into());
                }),
                true,
            ),
            (
                "NodeLabel3",
                Box::new(|k| {
                    k.labels.insert("cke.cybozu.com/foo".into(), "bar".into());
                }),
                true,
            ),
            (
                "NodeLabel4",
                Box::new(|k| {
                    k.labels.insert("sabakan.cke.cybozu.com/foo".into(), "bar".into());
                }),
                true,
            ),
            (
                "NodeLabel5",
                Box::new(|k| {
                    k.labels.insert("node-role.kubernetes.io/worker".into(), "false".into());
                }),
                true,
            ),
            (
                "NodeLabel6",
                Box::new(|k| {
                    k.labels.insert("node-role.kubernetes.io/hoge".into(), "true".into());
                }),
                false,
            ),
            (
                "NodeLabelCP2",
                Box::new(|k| {
                    k.labels.insert(MASTER_LABEL.into(), "true".into());
                }),
                true,
            ),
            ("NodeAnnotation1", Box::new(|k| k.annotations.clear()), true),
            (
                "NodeAnnotation2",
                Box::new(|k| {
                    k.annotations.insert("annotation1".into(), "wrongvalue".into());
                }),
                true,
            ),
            (
                "NodeAnnotation3",
                Box::new(|k| {
                    k.annotations.insert("cke.cybozu.com/foo".into(), "bar".into());
                }),
                true,
            ),
            (
                "reboot annotation is not internal",
                Box::new(|k| {
                    k.annotations.insert(REBOOT_ANNOTATION.into(), "true".into());
                }),
                false,
            ),
            ("NodeTaint1", Box::new(|k| k.taints[1].value = "value2".into()), true),
            (
                "NodeTaint2",
                Box::new(|k| k.taints[1].effect = "NoExecute".into()),
                true,
            ),
            ("NodeTaint3", Box::new(|k| k.taints[1].key = "taint3".into()), true),
            (
                "NodeTaint4",
                Box::new(|k| k.taints.push(taint("cke.cybozu.com/foo", "", "NoSchedule"))),
                true,
            ),
            (
                "a user's taint is kept",
                Box::new(|k| k.taints.push(taint("user", "", "NoSchedule"))),
                false,
            ),
            (
                "master taint without taint_control_plane",
                Box::new(|k| k.taints.push(taint(MASTER_TAINT, "", MASTER_TAINT_EFFECT))),
                true,
            ),
        ];
        for (name, change, want) in cases {
            let mut k = base.clone();
            change(&mut k);
            assert_eq!(is_outdated(&w, &k, false), want, "{name}: {k:?}");
        }
    }

    #[test]
    fn control_plane_label_and_taint() {
        let cp = control_plane();
        let mut k = KubeNode {
            name: "10.0.0.11".into(),
            ..Default::default()
        };
        // NodeLabelCP1, NodeLabelCP3.
        assert!(is_outdated(&cp, &k, false));
        k.labels.insert(MASTER_LABEL.into(), "hoge".into());
        assert!(is_outdated(&cp, &k, false));
        k.labels.insert(MASTER_LABEL.into(), "true".into());
        assert!(!is_outdated(&cp, &k, false));
        // NodeTaintCP1: taint_control_plane wants the taint.
        assert!(is_outdated(&cp, &k, true));
        // NodeTaintCP2: any value, effect PreferNoSchedule.
        k.taints = vec![taint(MASTER_TAINT, "hoge", MASTER_TAINT_EFFECT)];
        assert!(!is_outdated(&cp, &k, true));
        // NodeTaintCP3: another effect.
        k.taints = vec![taint(MASTER_TAINT, "hoge", "NoExecute")];
        assert!(is_outdated(&cp, &k, true));
        // NodeTaintCP4: the taint without taint_control_plane.
        k.taints = vec![taint(MASTER_TAINT, "hoge", MASTER_TAINT_EFFECT)];
        assert!(is_outdated(&cp, &k, false));
    }

    #[test]
    fn desired_keeps_users_keys_and_replaces_cke_ones() {
        let w = worker();
        let current = KubeNode {
            name: "10.0.0.14".into(),
            ready: true,
            labels: map(&[
                ("label1", "old"),
                ("user", "kept"),
                ("cke.cybozu.com/master", "true"),
                ("sabakan.cke.cybozu.com/rack", "1"),
                ("node-role.kubernetes.io/worker", "false"),
                ("node-role.kubernetes.io/hoge", "kept"),
            ]),
            annotations: map(&[
                ("cke.cybozu.com/reboot", "true"),
                ("cke.cybozu.com/old", "x"),
                ("a", "b"),
            ]),
            taints: vec![
                taint("user", "x", "NoExecute"),
                taint("taint1", "old", "NoExecute"),
                taint("cke.cybozu.com/foo", "", "NoSchedule"),
                taint(MASTER_TAINT, "", MASTER_TAINT_EFFECT),
            ],
            ..Default::default()
        };
        assert!(is_outdated(&w, &current, false));
        let d = desired(&w, &current, true);
        assert_eq!(
            d.labels,
            map(&[
                ("label1", "value"),
                ("user", "kept"),
                ("node-role.kubernetes.io/worker", "true"),
                ("node-role.kubernetes.io/hoge", "kept"),
            ])
        );
        assert_eq!(
            d.annotations,
            map(&[("cke.cybozu.com/reboot", "true"), ("a", "b"), ("annotation1", "value")])
        );
        assert_eq!(
            d.taints,
            vec![
                taint("taint1", "value1", "NoSchedule"),
                taint("taint2", "", "PreferNoSchedule"),
                taint("user", "x", "NoExecute"),
            ]
        );
        // What is written is no longer outdated.
        assert!(!is_outdated(&w, &d.apply_to(&current), true));

        // A control plane gets the label, and the taint with taint_control_plane; a taint it had
        // with another value is replaced.
        let cp = control_plane();
        let current = KubeNode {
            name: "10.0.0.11".into(),
            taints: vec![taint(MASTER_TAINT, "x", "NoExecute"), taint("user", "", "NoSchedule")],
            ..Default::default()
        };
        let d = desired(&cp, &current, true);
        assert_eq!(d.labels, map(&[(MASTER_LABEL, "true")]));
        assert_eq!(
            d.taints,
            vec![
                taint("user", "", "NoSchedule"),
                taint(MASTER_TAINT, "", MASTER_TAINT_EFFECT)
            ]
        );
        assert!(!is_outdated(&cp, &d.apply_to(&current), true));
        // Demoted: the label and the taint go, the rest stays.
        let demoted = Node::new("10.0.0.11", "cybozu", false);
        let before = d.apply_to(&current);
        assert!(is_outdated(&demoted, &before, false));
        let d = desired(&demoted, &before, false);
        assert!(d.labels.is_empty(), "{d:?}");
        assert_eq!(d.taints, vec![taint("user", "", "NoSchedule")]);
        assert!(!is_outdated(&demoted, &d.apply_to(&before), false));
    }

    #[test]
    fn changes_say_what_update_node_writes() {
        let mut w = Node::new("10.0.0.14", "cybozu", false);
        w.labels = map(&[("role", "db"), ("kept", "same")]);
        w.annotations = map(&[("note", "n")]);
        w.taints = vec![taint("dedicated", "db", "NoSchedule")];
        let current = KubeNode {
            name: "10.0.0.14".into(),
            labels: map(&[
                ("kept", "same"),
                ("role", "web"),
                ("hoge.cke.cybozu.com/l", "x"),
                ("other", "o"),
            ]),
            annotations: map(&[("cke.cybozu.com/stale", "1")]),
            taints: vec![
                taint("dedicated", "web", "NoSchedule"),
                taint("hoge.cke.cybozu.com/foo", "bar", "PreferNoSchedule"),
                taint("user", "", "NoExecute"),
            ],
            ..Default::default()
        };
        assert_eq!(
            changes(&w, &current, false),
            [
                "label role=db",
                "remove label hoge.cke.cybozu.com/l",
                "annotation note=n",
                "remove annotation cke.cybozu.com/stale",
                "taint dedicated=db:NoSchedule",
                "remove taint dedicated=web:NoSchedule",
                "remove taint hoge.cke.cybozu.com/foo=bar:PreferNoSchedule",
            ]
        );
        assert!(changes(&w, &desired(&w, &current, false).apply_to(&current), false).is_empty());
        // A control plane with taint_control_plane: the master label and taint.
        let cp = control_plane();
        let bare = KubeNode {
            name: "10.0.0.11".into(),
            ..Default::default()
        };
        assert_eq!(
            changes(&cp, &bare, true),
            [
                "label cke.cybozu.com/master=true",
                "taint cke.cybozu.com/master:PreferNoSchedule"
            ]
        );
    }
}
