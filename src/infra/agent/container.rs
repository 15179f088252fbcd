//! A docker-compatible container engine (`docker` or `podman`) driven over SSH. Every name, path and
//! argument is validated or shell-quoted; no command is built from unchecked input. Containers carry
//! CKE's params label (`com.cybozu.cke`: `{"builtin": ..., "extra": ...}`) so that outdated ones can
//! be detected.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use std::sync::LazyLock;

use super::{shell_join, shell_quote, AgentError, Runner};
use crate::model::{ContainerParams, Mount, ServiceStatus};

/// The params label.
pub const PARAMS_LABEL: &str = "com.cybozu.cke";

static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$").unwrap());
static IMAGE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9][a-zA-Z0-9_.:/@-]{0,255}$").unwrap());

fn check(what: &str, re: &Regex, v: &str) -> Result<(), AgentError> {
    if re.is_match(v) {
        Ok(())
    } else {
        Err(AgentError::Invalid {
            what: what.into(),
            reason: format!("{v:?} is not a valid {what}"),
        })
    }
}

/// What an engine's error message says when the object does not exist, without the first letter
/// (podman: "no such container", "no such volume"; docker: "No such container:", "No such object:",
/// "No such volume"). Also matched by the probe's shell script.
pub const ABSENT_MESSAGES: [&str; 3] = ["o such container", "o such object", "o such volume"];

/// Whether an engine's error message says the object does not exist.
pub fn is_absent(message: &str) -> bool {
    ABSENT_MESSAGES.iter().any(|p| message.contains(p))
}

/// How to start a system container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSpec {
    /// Container name.
    pub name: String,
    /// Image.
    pub image: String,
    /// The command and its arguments (builtin then extra).
    pub command: Vec<String>,
    /// Bind mounts and named volumes (a source that is not an absolute path is a volume).
    pub binds: Vec<Mount>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// The params label.
    pub params: ContainerParams,
    /// More `run` options (`--privileged`, `--tmpfs=/tmp`, `--log-driver=journald`, ...); each must
    /// start with `--` or be the value after a `--mount`.
    pub options: Vec<String>,
    /// How a running container of the same name ends before this one starts.
    pub replace: Replace,
    /// The image is known to be on the node: an earlier step of the operation pulled it, or the
    /// container being replaced runs it. The run then skips its image check (one engine start
    /// fewer per node; should the image have gone meanwhile, the engine's `run` pulls it itself).
    pub image_present: bool,
}

/// How [`ContainerEngine::run`] ends a running container it replaces, as CKE's restarts do:
/// kube-apiserver and etcd are stopped (SIGTERM, then SIGKILL after the engine's stop timeout, 10 s
/// by default: etcd hands its leadership over, the apiserver finishes its requests); rivers,
/// etcd-rivers, kube-controller-manager, kube-scheduler, kubelet and kube-proxy are killed at once
/// (rivers would otherwise drain for its `--shutdown-timeout` with its port closed, so the node's
/// clients would wait that long for the new one). `docker rm -f` kills and `podman rm -f` stops (with
/// its stop timeout), so neither is left to choose: a killed container is removed with `docker rm -f`
/// or `podman rm -f -t 0` (one engine call: SIGKILL and removal), a stopped one is `stop`ped first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Replace {
    /// `stop` first.
    #[default]
    Stop,
    /// Killed (SIGKILL) by its removal.
    Kill,
}

/// What an `inspect` found: the state of each container asked for (absent ones: `exists: false`)
/// and which of the volumes asked for exist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inspected {
    /// By container name.
    pub containers: BTreeMap<String, ServiceStatus>,
    /// The volumes that exist.
    pub volumes: std::collections::BTreeSet<String>,
}

/// The fields of an inspected object the probe reads (docker and podman name them alike; docker
/// puts a `/` before container names).
#[derive(serde::Deserialize)]
struct InspectObject {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "State")]
    state: Option<InspectState>,
    #[serde(rename = "Mountpoint")]
    mountpoint: Option<String>,
    #[serde(rename = "Config")]
    config: Option<InspectConfig>,
    #[serde(rename = "ImageName")]
    image_name: Option<String>,
}

#[derive(serde::Deserialize)]
struct InspectState {
    #[serde(rename = "Running", default)]
    running: bool,
}

#[derive(serde::Deserialize)]
struct InspectConfig {
    #[serde(rename = "Image")]
    image: Option<String>,
    #[serde(rename = "Labels", default, deserialize_with = "null_as_empty")]
    labels: BTreeMap<String, String>,
}

/// `null` (docker's empty label set) as an empty map.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

/// The engine.
#[derive(Debug, Clone)]
pub struct ContainerEngine {
    cli: String,
    run_flags: Vec<String>,
    timeout: Duration,
}

impl Default for ContainerEngine {
    fn default() -> Self {
        ContainerEngine::new("podman", vec![])
    }
}

impl ContainerEngine {
    /// An engine using `cli` (`docker` or `podman`) with extra flags for `run` (e.g. `--runtime runc`).
    pub fn new(cli: &str, run_flags: Vec<String>) -> Self {
        ContainerEngine {
            cli: cli.into(),
            run_flags,
            timeout: Duration::from_secs(120),
        }
    }

    /// The CLI's name (`docker` or `podman`).
    pub fn cli(&self) -> &str {
        &self.cli
    }

    /// Whether the CLI is podman (by its file name).
    fn is_podman(&self) -> bool {
        std::path::Path::new(&self.cli)
            .file_name()
            .is_some_and(|n| n == "podman")
    }

    fn cmd(&self, args: &[&str]) -> String {
        format!("{} {}", shell_quote(&self.cli), shell_join(args))
    }

    /// The `run` command line for `spec` (pure; validated).
    pub fn run_command(&self, spec: &RunSpec) -> Result<String, AgentError> {
        check("container name", &NAME, &spec.name)?;
        check("image", &IMAGE, &spec.image)?;
        let label = serde_json::to_string(&spec.params).expect("params serialize");
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            spec.name.clone(),
            "--network".into(),
            "host".into(),
            "--restart".into(),
            "no".into(),
            "--label".into(),
            format!("{PARAMS_LABEL}={label}"),
        ];
        args.extend(self.run_flags.iter().cloned());
        let mut after_mount = false;
        for o in &spec.options {
            if !(o.starts_with("--") || after_mount) {
                return Err(AgentError::Invalid {
                    what: "run option".into(),
                    reason: format!("{o:?} does not start with --"),
                });
            }
            after_mount = o == "--mount";
            args.push(o.clone());
        }
        for m in &spec.binds {
            if !m.destination.starts_with('/') {
                return Err(AgentError::Invalid {
                    what: "mount".into(),
                    reason: format!("{:?} is not absolute", m.destination),
                });
            }
            if !m.source.starts_with('/') {
                check("volume name", &NAME, &m.source)?;
            }
            let mut opts = vec![if m.read_only { "ro" } else { "rw" }.to_string()];
            if !m.propagation.is_empty() {
                opts.push(m.propagation.clone());
            }
            if !m.selinux_label.is_empty() {
                opts.push(m.selinux_label.clone());
            }
            args.push("-v".into());
            args.push(format!("{}:{}:{}", m.source, m.destination, opts.join(",")));
        }
        for (k, v) in &spec.env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push(spec.image.clone());
        args.extend(spec.command.iter().cloned());
        Ok(format!("{} {}", shell_quote(&self.cli), shell_join(&args)))
    }

    /// Starts a container, replacing one of the same name. The image is made present first (pulled
    /// when missing), so a failed pull leaves the old container running; not checked when
    /// `spec.image_present` says it is there.
    /// One SSH command: the image check, the pull when it is missing, then the removal and the run
    /// (skipped when the pull failed). The old container is stopped then removed, or killed by its
    /// removal, as `spec.replace` says. A removal that fails (an engine under load may) is tried once more a
    /// second later, its error kept: the run then fails with both the removal's error and its own
    /// ("name in use") rather than the run's alone. The status of the stop and the first removal is
    /// not checked otherwise: each fails when there is no such container.
    pub async fn run(&self, node: &dyn Runner, spec: &RunSpec) -> Result<(), AgentError> {
        let run = self.run_command(spec)?;
        let image = self.cmd(&["image", "inspect", &spec.image]);
        let pull = self.cmd(&["pull", "-q", &spec.image]);
        let (stop, rm) = match spec.replace {
            Replace::Stop => (
                format!("{} >/dev/null 2>&1; ", self.cmd(&["stop", &spec.name])),
                self.cmd(&["rm", "-f", &spec.name]),
            ),
            // podman's `rm -f` stops with the stop timeout unless told none.
            Replace::Kill if self.is_podman() => (String::new(), self.cmd(&["rm", "-f", "-t", "0", &spec.name])),
            Replace::Kill => (String::new(), self.cmd(&["rm", "-f", &spec.name])),
        };
        let image = if spec.image_present {
            String::new()
        } else {
            format!("{{ {image} >/dev/null 2>&1 || {pull} >/dev/null; }} && ")
        };
        node.check(
            &format!("{image}{{ {stop}{rm} >/dev/null 2>&1 || {{ sleep 1; {rm} >/dev/null; }}; {run}; }}"),
            None,
            Duration::from_secs(600),
        )
        .await
        .map(|_| ())
    }

    /// The state of these containers (absent ones: `exists: false`).
    pub async fn inspect(
        &self,
        node: &dyn Runner,
        names: &[&str],
    ) -> Result<BTreeMap<String, ServiceStatus>, AgentError> {
        for n in names {
            check("container name", &NAME, n)?;
        }
        let script: Vec<String> = names
            .iter()
            .map(|n| format!("{} 2>/dev/null || echo '[]'", self.cmd(&["container", "inspect", n])))
            .collect();
        let out = node.check(&script.join("; "), None, self.timeout).await?;
        self.parse_inspect(node.address(), &out.stdout, names)
    }

    /// Parses the concatenated output of `container inspect NAME || echo '[]'` for each name.
    pub fn parse_inspect(
        &self,
        address: &str,
        stdout: &[u8],
        names: &[&str],
    ) -> Result<BTreeMap<String, ServiceStatus>, AgentError> {
        Ok(self.parse_inspect_all(address, stdout, names, &[])?.containers)
    }

    /// Parses what `inspect` (without a type) printed for the containers `containers` and the volumes
    /// `volumes`: one or more JSON arrays of objects. An object with a `State` is a container, one
    /// with a `Mountpoint` a volume; others (an image or network of the same name) are skipped, as
    /// the name then names no such container. A volume name that came back as another kind of
    /// object is an error: the engine shows the first kind it finds, so whether the volume exists
    /// cannot be told.
    pub fn parse_inspect_all(
        &self,
        address: &str,
        stdout: &[u8],
        containers: &[&str],
        volumes: &[&str],
    ) -> Result<Inspected, AgentError> {
        let bad = |reason: String| AgentError::Output {
            address: address.into(),
            command: "inspect".into(),
            reason,
        };
        let mut result = Inspected {
            containers: containers
                .iter()
                .map(|n| (n.to_string(), ServiceStatus::default()))
                .collect(),
            volumes: Default::default(),
        };
        for doc in serde_json::Deserializer::from_slice(stdout).into_iter::<Vec<InspectObject>>() {
            let doc = doc.map_err(|e| bad(e.to_string()))?;
            for c in doc {
                let name = c.name.trim_start_matches('/');
                let is_volume = c.mountpoint.is_some() && c.state.is_none();
                if is_volume {
                    if volumes.contains(&name) {
                        result.volumes.insert(name.to_string());
                    }
                    continue;
                }
                if volumes.contains(&name) {
                    return Err(bad(format!(
                        "{name:?} names another object than a volume; cannot tell whether the volume exists"
                    )));
                }
                let Some(state) = c.state else { continue };
                if let Some(st) = result.containers.get_mut(name) {
                    st.exists = true;
                    st.running = state.running;
                    st.image = c
                        .config
                        .as_ref()
                        .and_then(|c| c.image.clone())
                        .or(c.image_name)
                        .unwrap_or_default();
                    st.params = c
                        .config
                        .and_then(|mut c| c.labels.remove(PARAMS_LABEL))
                        .and_then(|l| serde_json::from_str(&l).ok());
                }
            }
        }
        Ok(result)
    }

    /// Stops a container (no error when it does not exist).
    pub async fn stop(&self, node: &dyn Runner, name: &str) -> Result<(), AgentError> {
        check("container name", &NAME, name)?;
        let c = self.cmd(&["stop", "-t", "10", name]);
        node.check(
            &format!(
                "{c} >/dev/null 2>&1 || ! {} >/dev/null 2>&1",
                self.cmd(&["container", "exists", name])
            ),
            None,
            self.timeout,
        )
        .await
        .map(|_| ())
    }

    /// Kills a container (no error when it does not exist or is not running).
    pub async fn kill(&self, node: &dyn Runner, name: &str) -> Result<(), AgentError> {
        check("container name", &NAME, name)?;
        node.run(&self.cmd(&["kill", name]), None, self.timeout)
            .await
            .map(|_| ())
    }

    /// Removes a container, running or not (no error when absent; an error when it is still there
    /// afterwards).
    pub async fn remove(&self, node: &dyn Runner, name: &str) -> Result<(), AgentError> {
        check("container name", &NAME, name)?;
        self.remove_checked(node, &["rm", "-f", name], &["container", "inspect", name])
            .await
    }

    /// Runs a removal; when it fails, fails unless `exists` (an inspect) says the object does not
    /// exist (the engine's "no such ..."; any other failure of the inspect is no proof).
    async fn remove_checked(&self, node: &dyn Runner, remove: &[&str], exists: &[&str]) -> Result<(), AgentError> {
        let command = self.cmd(remove);
        let out = node.run(&command, None, self.timeout).await?;
        if out.status == 0 {
            return Ok(());
        }
        let inspect = node.run(&self.cmd(exists), None, self.timeout).await?;
        if inspect.status != 0 && is_absent(&String::from_utf8_lossy(&inspect.stderr)) {
            return Ok(());
        }
        Err(AgentError::Failed {
            address: node.address().into(),
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().chars().take(500).collect(),
        })
    }

    /// Runs a command inside a running container.
    pub async fn exec(&self, node: &dyn Runner, name: &str, command: &[&str]) -> Result<super::Output, AgentError> {
        check("container name", &NAME, name)?;
        let mut args = vec!["exec", name];
        args.extend_from_slice(command);
        node.check(&self.cmd(&args), None, self.timeout).await
    }

    /// Creates a named volume (idempotent).
    pub async fn volume_create(&self, node: &dyn Runner, name: &str) -> Result<(), AgentError> {
        check("volume name", &NAME, name)?;
        if self.volume_exists(node, name).await? {
            return Ok(());
        }
        node.check(&self.cmd(&["volume", "create", name]), None, self.timeout)
            .await
            .map(|_| ())
    }

    /// Whether a named volume exists.
    pub async fn volume_exists(&self, node: &dyn Runner, name: &str) -> Result<bool, AgentError> {
        check("volume name", &NAME, name)?;
        let out = node
            .run(&self.cmd(&["volume", "inspect", name]), None, self.timeout)
            .await?;
        Ok(out.status == 0)
    }

    /// Removes a named volume (no error when absent; an error when it is still there afterwards,
    /// e.g. in use).
    pub async fn volume_remove(&self, node: &dyn Runner, name: &str) -> Result<(), AgentError> {
        check("volume name", &NAME, name)?;
        self.remove_checked(node, &["volume", "rm", "-f", name], &["volume", "inspect", name])
            .await
    }

    /// Whether an image is present.
    pub async fn image_exists(&self, node: &dyn Runner, image: &str) -> Result<bool, AgentError> {
        check("image", &IMAGE, image)?;
        let out = node
            .run(&self.cmd(&["image", "inspect", image]), None, self.timeout)
            .await?;
        Ok(out.status == 0)
    }

    /// Pulls an image.
    pub async fn pull(&self, node: &dyn Runner, image: &str) -> Result<(), AgentError> {
        check("image", &IMAGE, image)?;
        node.check(&self.cmd(&["pull", "-q", image]), None, Duration::from_secs(600))
            .await
            .map(|_| ())
    }

    /// Loads an image from a tar archive on the node.
    pub async fn load(&self, node: &dyn Runner, tar_path: &str) -> Result<(), AgentError> {
        if !tar_path.starts_with('/') {
            return Err(AgentError::Invalid {
                what: "path".into(),
                reason: format!("{tar_path:?} must be absolute"),
            });
        }
        node.check(
            &self.cmd(&["load", "-q", "-i", tar_path]),
            None,
            Duration::from_secs(600),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container CKE started, as `docker container inspect` shows it: CKE's label is Go's
    /// `json.Marshal` of its params (nil slices and maps as `null`, every Mount field present).
    #[test]
    fn the_params_label_of_a_container_cke_started_is_read() {
        let label = r#"{"builtin":{"extra_args":["--name=10.0.0.1","--listen-peer-urls=https://0.0.0.0:2380","--initial-cluster-state=new"],"extra_binds":[{"source":"/etc/etcd/pki","destination":"/etc/etcd/pki","read_only":true,"propagation":"","selinux_label":"Z"}],"extra_env":null},"extra":{"extra_args":null,"extra_binds":null,"extra_env":null}}"#;
        let inspect = serde_json::json!([{
            "Name": "/etcd",
            "State": {"Running": true},
            "Config": {"Image": "ghcr.io/cybozu/etcd:3.6.11.1", "Labels": {PARAMS_LABEL: label}},
        }]);
        let e = ContainerEngine::default();
        let st = e
            .parse_inspect("10.0.0.1", inspect.to_string().as_bytes(), &["etcd"])
            .unwrap();
        let p = st["etcd"].params.as_ref().expect("CKE's label parses");
        assert_eq!(p.builtin.extra_args[0], "--name=10.0.0.1");
        assert_eq!(p.builtin.extra_binds[0].selinux_label, "Z");
        assert!(p.builtin.extra_binds[0].read_only);
        assert!(p.extra.is_empty());
        assert_eq!(st["etcd"].image, "ghcr.io/cybozu/etcd:3.6.11.1");
    }

    /// Runs commands with the local `sh`.
    struct LocalShell;

    #[async_trait::async_trait]
    impl Runner for LocalShell {
        fn address(&self) -> &str {
            "local"
        }

        async fn run(
            &self,
            command: &str,
            _stdin: Option<&[u8]>,
            _timeout: Duration,
        ) -> Result<super::super::Output, AgentError> {
            let out = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .output()
                .await
                .unwrap();
            Ok(super::super::Output {
                stdout: out.stdout,
                stderr: out.stderr,
                status: out.status.code().unwrap_or(255) as u32,
            })
        }
    }

    /// An engine whose `rm` fails `failures` times, and whose `run` fails while the container exists.
    fn flaky_engine(dir: &std::path::Path, failures: u32) -> ContainerEngine {
        let d = dir.display();
        let cli = dir.join("engine");
        std::fs::write(dir.join("rm-failures"), failures.to_string()).unwrap();
        std::fs::write(dir.join("container"), "").unwrap();
        std::fs::write(
            &cli,
            format!(
                r#"#!/bin/sh
echo "$1" >> {d}/calls
case "$1" in
image) exit 0 ;;
rm) n=$(cat {d}/rm-failures)
    if [ "$n" -gt 0 ]; then echo $((n - 1)) > {d}/rm-failures; echo "Error: cannot remove: engine busy" >&2; exit 125; fi
    rm -f {d}/container ;;
run) if [ -e {d}/container ]; then echo "Error: the container name is already in use" >&2; exit 125; fi
    touch {d}/container ;;
esac
"#
            ),
        )
        .unwrap();
        std::fs::set_permissions(&cli, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        ContainerEngine::new(&cli.display().to_string(), vec![])
    }

    fn spec(replace: Replace) -> RunSpec {
        RunSpec {
            name: "rivers".into(),
            image: "localhost/cke-tools:latest".into(),
            command: vec!["rivers".into()],
            replace,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_killed_container_is_ended_by_its_removal_a_stopped_one_by_stop_a_present_image_unchecked() {
        for cli in ["docker", "podman"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(cli);
            let d = dir.path().display();
            std::fs::write(&path, format!("#!/bin/sh\necho \"$*\" >> {d}/calls\n")).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            let engine = ContainerEngine::new(&path.display().to_string(), vec![]);
            engine.run(&LocalShell, &spec(Replace::Kill)).await.unwrap();
            engine.run(&LocalShell, &spec(Replace::Stop)).await.unwrap();
            let present = RunSpec {
                image_present: true,
                ..spec(Replace::Kill)
            };
            engine.run(&LocalShell, &present).await.unwrap();
            let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
            // The run's own arguments are checked by `run_commands_are_quoted_and_validated`.
            let calls: Vec<&str> = calls
                .lines()
                .map(|l| if l.starts_with("run ") { "run" } else { l })
                .collect();
            let inspect = "image inspect localhost/cke-tools:latest";
            let kill = if cli == "podman" {
                "rm -f -t 0 rivers"
            } else {
                "rm -f rivers"
            };
            assert_eq!(
                calls,
                [
                    inspect,
                    kill,
                    "run",
                    inspect,
                    "stop rivers",
                    "rm -f rivers",
                    "run",
                    kill,
                    "run"
                ],
                "{cli}"
            );
        }
    }

    #[tokio::test]
    async fn a_replacement_ends_the_old_container_as_asked_and_tries_a_failed_removal_again() {
        let calls = |dir: &tempfile::TempDir| std::fs::read_to_string(dir.path().join("calls")).unwrap();
        // One failed removal: the second one and the run succeed.
        let dir = tempfile::tempdir().unwrap();
        flaky_engine(dir.path(), 1)
            .run(&LocalShell, &spec(Replace::Kill))
            .await
            .unwrap();
        assert_eq!(calls(&dir), "image\nrm\nrm\nrun\n");
        // Two: the run fails, and the error says why the old container is still there.
        let dir = tempfile::tempdir().unwrap();
        let err = flaky_engine(dir.path(), 2)
            .run(&LocalShell, &spec(Replace::Stop))
            .await
            .unwrap_err();
        assert_eq!(calls(&dir), "image\nstop\nrm\nrm\nrun\n");
        let text = err.to_string();
        assert!(
            text.contains("cannot remove: engine busy") && text.contains("already in use"),
            "{text}"
        );
        // None: one removal.
        let dir = tempfile::tempdir().unwrap();
        flaky_engine(dir.path(), 0)
            .run(&LocalShell, &spec(Replace::Stop))
            .await
            .unwrap();
        assert_eq!(calls(&dir), "image\nstop\nrm\nrun\n");
    }

    #[test]
    fn run_commands_are_quoted_and_validated() {
        let e = ContainerEngine::new("podman", vec!["--runtime".into(), "runc".into()]);
        let spec = RunSpec {
            name: "etcd".into(),
            image: "localhost/cke-etcd:latest".into(),
            command: vec!["/usr/bin/etcd".into(), "--name=a b".into()],
            binds: vec![Mount {
                source: "etcd-cke".into(),
                destination: "/var/lib/etcd".into(),
                ..Default::default()
            }],
            env: BTreeMap::from([("GOMAXPROCS".into(), "2".into())]),
            params: ContainerParams::default(),
            options: vec![
                "--privileged".into(),
                "--mount".into(),
                "type=tmpfs,dst=/run/kubernetes".into(),
            ],
            replace: Replace::Stop,
            image_present: false,
        };
        let c = e.run_command(&spec).unwrap();
        assert!(c.contains("--privileged --mount type=tmpfs,dst=/run/kubernetes"), "{c}");
        let s = RunSpec {
            options: vec!["-v".into()],
            ..spec.clone()
        };
        assert!(e.run_command(&s).is_err(), "an option without -- accepted");
        assert!(c.starts_with("podman run -d --name etcd --network host"), "{c}");
        assert!(c.contains("--runtime runc"));
        assert!(c.contains("-v etcd-cke:/var/lib/etcd:rw"));
        assert!(c.contains("'--name=a b'"));
        assert!(c.contains("'com.cybozu.cke={\"builtin\":"), "{c}");
        for bad in ["a;b", "$(x)", "", "-rf"] {
            let s = RunSpec {
                name: bad.into(),
                ..spec.clone()
            };
            assert!(e.run_command(&s).is_err(), "{bad:?} accepted");
        }
        let s = RunSpec {
            image: "x y".into(),
            ..spec.clone()
        };
        assert!(e.run_command(&s).is_err());
        let s = RunSpec {
            binds: vec![Mount {
                source: "vol;rm".into(),
                destination: "/d".into(),
                ..Default::default()
            }],
            ..spec
        };
        assert!(e.run_command(&s).is_err());
    }
}
