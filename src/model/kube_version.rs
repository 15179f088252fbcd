//! The one table of differences between Kubernetes minor versions, and the version of an image.
//!
//! [`VERSION_SETS`] holds one [`VersionSet`] per minor version cke knows: 1.20 (the version the test
//! bed builds and runs for real, see `docs/kubernetes.md`) and 1.35 (the version CKE's current release
//! runs, `images.go` `ghcr.io/cybozu/kubernetes:1.35.5.1`). A minor between two entries uses the
//! nearest lower entry ([`Resolved::exact`] is then false, so callers can warn); a minor below the
//! first entry, or an image whose tag is no version, is an error naming the image.

use std::fmt;

/// Kind of the kubelet configuration.
pub const KUBELET_KIND: &str = "KubeletConfiguration";
/// Kind of the scheduler configuration.
pub const SCHEDULER_KIND: &str = "KubeSchedulerConfiguration";
/// Kind of the kube-proxy configuration.
pub const PROXY_KIND: &str = "KubeProxyConfiguration";

/// The Kubernetes version cannot be read from an image reference, or is not supported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image {image:?}: {reason}")]
pub struct KubeVersionError {
    /// The image reference.
    pub image: String,
    /// What is wrong.
    pub reason: String,
}

/// A Kubernetes version as read from an image tag (`1.35.5.1` → 1.35, patch 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    /// Major version (always 1 today).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version, when the tag has one.
    pub patch: Option<u32>,
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.patch {
            Some(p) => write!(f, "{}.{}.{p}", self.major, self.minor),
            None => write!(f, "{}.{}", self.major, self.minor),
        }
    }
}

impl KubeVersion {
    /// The version in an image reference's tag: `ghcr.io/cybozu/kubernetes:1.35.5.1` → 1.35.5,
    /// `localhost/cke-kubernetes:1.20.2` → 1.20.2, `registry:5000/k:v1.20.2@sha256:...` → 1.20.2.
    /// Extra dot-separated parts (CKE's image revision) and a `-suffix` are ignored.
    pub fn from_image(image: &str) -> Result<KubeVersion, KubeVersionError> {
        let err = |reason: String| KubeVersionError {
            image: image.to_string(),
            reason,
        };
        let without_digest = image.split('@').next().unwrap_or_default();
        let last = without_digest.rsplit('/').next().unwrap_or_default();
        let Some((_, tag)) = last.rsplit_once(':') else {
            return Err(err("has no tag; the Kubernetes version is read from the tag".into()));
        };
        let tag = tag.strip_prefix('v').unwrap_or(tag);
        let core = tag.split(['-', '+']).next().unwrap_or_default();
        let mut parts = core.split('.');
        let mut number = |what: &str| -> Result<Option<u32>, KubeVersionError> {
            match parts.next() {
                None => Ok(None),
                Some(p) => p
                    .parse::<u32>()
                    .map(Some)
                    .map_err(|_| err(format!("tag {tag:?} is not a version: {what} {p:?} is not a number"))),
            }
        };
        let major = number("major")?;
        let minor = number("minor")?;
        let patch = number("patch")?;
        let (Some(major), Some(minor)) = (major, minor) else {
            return Err(err(format!(
                "tag {tag:?} is not a version (want MAJOR.MINOR[.PATCH...])"
            )));
        };
        Ok(KubeVersion { major, minor, patch })
    }
}

/// Everything that differs between Kubernetes minor versions, for one minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionSet {
    /// The first minor version (of major 1) this set applies to.
    pub minor: u32,
    /// kubelet needs `--container-runtime=remote` and a `unix://` endpoint URL (dockershim era,
    /// before 1.24 removed it).
    pub kubelet_remote_runtime_flag: bool,
    /// kube-controller-manager and kube-scheduler still have an insecure HTTP port: `--port=0`
    /// turns it off.
    pub insecure_port_off: bool,
    /// `--enable-admission-plugins` of kube-apiserver.
    pub admission_plugins: &'static [&'static str],
    /// kube-apiserver gets `--feature-gates=CoordinatedLeaderElection=true` and
    /// `--runtime-config=coordination.k8s.io/v1beta1=true` (CKE, for rolling restarts).
    pub coordinated_leader_election: bool,
    /// `apiVersion` of `KubeletConfiguration`.
    pub kubelet_config_api: &'static str,
    /// `apiVersion` of `KubeSchedulerConfiguration`.
    pub scheduler_config_api: &'static str,
    /// `apiVersion` of `KubeProxyConfiguration`.
    pub proxy_config_api: &'static str,
    /// API group/version of `EndpointSlice`.
    pub endpoint_slice_api: &'static str,
    /// API group/version of `PodDisruptionBudget` and `Eviction`.
    pub policy_api: &'static str,
    /// DaemonSet rolling updates know `maxSurge` (1.21 alpha, on by default from 1.22). Without it
    /// the field is not in the schema (server-side apply refuses it) and `maxUnavailable` must not
    /// be 0, so CKE's node-dns DaemonSet gets the default `maxUnavailable: 1` instead.
    pub daemonset_max_surge: bool,
}

/// The known sets, ascending by minor version.
pub static VERSION_SETS: [VersionSet; 2] = [
    // What the test bed's Kubernetes 1.20.2 needs (k8s-testbed.md, verified on these machines).
    VersionSet {
        minor: 20,
        kubelet_remote_runtime_flag: true,
        insecure_port_off: true,
        admission_plugins: &["NodeRestriction"],
        coordinated_leader_election: false,
        kubelet_config_api: "kubelet.config.k8s.io/v1beta1",
        scheduler_config_api: "kubescheduler.config.k8s.io/v1beta1",
        proxy_config_api: "kubeproxy.config.k8s.io/v1alpha1",
        endpoint_slice_api: "discovery.k8s.io/v1beta1",
        policy_api: "policy/v1beta1",
        daemonset_max_surge: false,
    },
    // CKE's current release (op/k8s/*.go, op/k8s/config.go schemes, cybozu-go/cke @ d66a146).
    VersionSet {
        minor: 35,
        kubelet_remote_runtime_flag: false,
        insecure_port_off: false,
        admission_plugins: &["NodeRestriction", "DenyServiceExternalIPs"],
        coordinated_leader_election: true,
        kubelet_config_api: "kubelet.config.k8s.io/v1beta1",
        scheduler_config_api: "kubescheduler.config.k8s.io/v1",
        proxy_config_api: "kubeproxy.config.k8s.io/v1alpha1",
        endpoint_slice_api: "discovery.k8s.io/v1",
        policy_api: "policy/v1",
        daemonset_max_surge: true,
    },
];

/// A version and the set that applies to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The version read from the image.
    pub version: KubeVersion,
    /// Its set: the entry of its minor, or the nearest lower one.
    pub set: &'static VersionSet,
    /// The table has an entry for exactly this minor.
    pub exact: bool,
}

impl VersionSet {
    /// The set for `version`: its own entry, else the nearest lower one. An error (naming `image`)
    /// for a major other than 1 or a minor below the first entry.
    pub fn for_version(version: KubeVersion, image: &str) -> Result<Resolved, KubeVersionError> {
        if version.major != 1 {
            return Err(KubeVersionError {
                image: image.into(),
                reason: format!("Kubernetes {version} is not supported (major version must be 1)"),
            });
        }
        let set = VERSION_SETS
            .iter()
            .rev()
            .find(|s| s.minor <= version.minor)
            .ok_or_else(|| KubeVersionError {
                image: image.into(),
                reason: format!(
                    "Kubernetes {version} is older than the oldest supported version 1.{}",
                    VERSION_SETS[0].minor
                ),
            })?;
        Ok(Resolved {
            version,
            set,
            exact: set.minor == version.minor,
        })
    }

    /// The set for the Kubernetes image `image` (version from its tag).
    pub fn for_image(image: &str) -> Result<Resolved, KubeVersionError> {
        Self::for_version(KubeVersion::from_image(image)?, image)
    }

    /// The set of exactly 1.`minor`, if the table has one (tests, docs).
    pub fn exact(minor: u32) -> Option<&'static VersionSet> {
        VERSION_SETS.iter().find(|s| s.minor == minor)
    }

    /// The newest set (CKE's current release).
    pub fn latest() -> &'static VersionSet {
        &VERSION_SETS[VERSION_SETS.len() - 1]
    }
}

/// Every `apiVersion` some known set uses for the component configuration `kind`
/// (`KubeletConfiguration`, `KubeSchedulerConfiguration`, `KubeProxyConfiguration`), for validating
/// a declaration before the image (and so the version) is known. Empty for another kind.
pub fn config_api_versions(kind: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = VERSION_SETS
        .iter()
        .filter_map(|s| match kind {
            "KubeletConfiguration" => Some(s.kubelet_config_api),
            "KubeSchedulerConfiguration" => Some(s.scheduler_config_api),
            "KubeProxyConfiguration" => Some(s.proxy_config_api),
            _ => None,
        })
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(image: &str) -> KubeVersion {
        KubeVersion::from_image(image).unwrap()
    }

    #[test]
    fn versions_from_image_tags() {
        assert_eq!(
            v("ghcr.io/cybozu/kubernetes:1.35.5.1"),
            KubeVersion {
                major: 1,
                minor: 35,
                patch: Some(5)
            }
        );
        assert_eq!(
            v("localhost/cke-kubernetes:1.20.2"),
            KubeVersion {
                major: 1,
                minor: 20,
                patch: Some(2)
            }
        );
        assert_eq!(v("registry:5000/kube:v1.27.3@sha256:abcd").minor, 27);
        assert_eq!(
            v("kube:1.28"),
            KubeVersion {
                major: 1,
                minor: 28,
                patch: None
            }
        );
        assert_eq!(v("kube:1.30.1-rc.0").patch, Some(1));
        assert_eq!(v("ghcr.io/cybozu/kubernetes:1.35.5.1").to_string(), "1.35.5");
    }

    #[test]
    fn bad_tags_name_the_image() {
        for (image, want) in [
            ("localhost:5000/kubernetes", "has no tag"),
            ("kubernetes:latest", "is not a number"),
            ("kubernetes:1", "is not a version"),
            ("kubernetes:1.x.2", "minor \"x\""),
        ] {
            let e = KubeVersion::from_image(image).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(image) && text.contains(want), "{image}: {text}");
        }
    }

    #[test]
    fn sets_resolve_to_the_nearest_lower_entry() {
        let r = VersionSet::for_image("ghcr.io/cybozu/kubernetes:1.35.5.1").unwrap();
        assert!(r.exact);
        assert_eq!(r.set.minor, 35);
        let r = VersionSet::for_image("localhost/cke-kubernetes:1.20.2").unwrap();
        assert!(r.exact);
        assert_eq!(r.set.scheduler_config_api, "kubescheduler.config.k8s.io/v1beta1");
        let r = VersionSet::for_image("k:1.27.1").unwrap();
        assert!(!r.exact);
        assert_eq!(r.set.minor, 20);
        let r = VersionSet::for_image("k:1.36.0").unwrap();
        assert!(!r.exact);
        assert_eq!(r.set.minor, 35);
        let e = VersionSet::for_image("k:1.19.16").unwrap_err().to_string();
        assert!(e.contains("k:1.19.16") && e.contains("older than"), "{e}");
        let e = VersionSet::for_image("k:2.0.0").unwrap_err().to_string();
        assert!(e.contains("major version must be 1"), "{e}");
    }

    #[test]
    fn the_table_is_sorted_and_has_both_sets() {
        assert!(VERSION_SETS.windows(2).all(|w| w[0].minor < w[1].minor));
        let old = VersionSet::exact(20).unwrap();
        let new = VersionSet::exact(35).unwrap();
        assert_eq!(VersionSet::latest(), new);
        assert!(old.kubelet_remote_runtime_flag && !new.kubelet_remote_runtime_flag);
        assert!(old.insecure_port_off && !new.insecure_port_off);
        assert!(!old.admission_plugins.contains(&"DenyServiceExternalIPs"));
        assert!(!old.coordinated_leader_election && new.coordinated_leader_election);
        assert_eq!(
            (old.endpoint_slice_api, new.endpoint_slice_api),
            ("discovery.k8s.io/v1beta1", "discovery.k8s.io/v1")
        );
        assert_eq!((old.policy_api, new.policy_api), ("policy/v1beta1", "policy/v1"));
        assert_eq!(
            config_api_versions("KubeSchedulerConfiguration"),
            ["kubescheduler.config.k8s.io/v1beta1", "kubescheduler.config.k8s.io/v1"]
        );
        assert_eq!(
            config_api_versions("KubeletConfiguration"),
            ["kubelet.config.k8s.io/v1beta1"]
        );
        assert!(config_api_versions("Pod").is_empty());
    }
}
