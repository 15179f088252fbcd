//! `etcd-add-member`: join a control-plane node as a learner, start it, promote it once it is in
//! sync, mark it. A half-added member on the node (`replace`) is removed first; stale etcd state on
//! the node is wiped, but never a started or voting member's. The learner's id and the member list
//! after the add pass to the later steps as typed state ([`Outcome::LearnerAdded`]).

use std::time::Duration;

use async_trait::async_trait;

use super::{connect, mark, others, run_spec, write_certs, Promote, RemoveMember, Wipe, WipeGuard};
use crate::model::RecordCommand;
use crate::op::common::{CreateVolume, RunContainer};
use crate::op::{CommandError, Commander, Infra, OpContext, Operator, Outcome};
use crate::planner::params::{etcd_peer_url, InitialClusterState};
use crate::topology::Images;

/// How long the cluster may refuse a new learner (a previous one still catching up).
pub const ADD_LIMIT: Duration = Duration::from_secs(60);
/// How long the learner may take to catch up.
pub const PROMOTE_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    RemoveHalfAdded,
    Wipe,
    Certificates,
    Volume,
    AddLearner,
    Run,
    Promote,
    Mark,
    Done,
}

/// The operator's state.
pub struct AddMember {
    node: String,
    replace: Option<u64>,
    peers: Vec<String>,
    volume: String,
    cluster: crate::model::Cluster,
    images: Images,
    step: Step,
    learner: Option<(u64, Vec<String>)>,
}

/// The operator.
pub fn operator(node: &str, replace: Option<u64>, ctx: OpContext<'_>) -> Box<dyn Operator> {
    Box::new(AddMember {
        node: node.into(),
        replace,
        peers: others(ctx.cluster, node),
        volume: ctx.cluster.options.etcd.volume().into(),
        cluster: ctx.cluster.clone(),
        images: ctx.images.clone(),
        step: if replace.is_some() {
            Step::RemoveHalfAdded
        } else {
            Step::Wipe
        },
        learner: None,
    })
}

static NO_STATUS: std::sync::LazyLock<crate::model::ClusterStatus> = std::sync::LazyLock::new(Default::default);
static NO_HOST: std::sync::LazyLock<crate::k8s::params::HostSettings> = std::sync::LazyLock::new(Default::default);

impl AddMember {
    fn ctx(&self) -> OpContext<'_> {
        OpContext {
            cluster: &self.cluster,
            images: &self.images,
            // The etcd operators read neither the Kubernetes host settings nor the resources, and
            // the status only to skip a run's image check over an etcd of the same image: a joining
            // member has none, so without a status its run checks the image, as it must.
            status: &NO_STATUS,
            host: &NO_HOST,
            resources: &[],
        }
    }
}

impl Operator for AddMember {
    fn name(&self) -> &'static str {
        "etcd-add-member"
    }

    fn targets(&self) -> Vec<String> {
        vec![self.node.clone()]
    }

    fn next_command(&mut self) -> Option<Box<dyn Commander>> {
        let node = self.node.clone();
        let (cmd, next): (Box<dyn Commander>, Step) = match self.step {
            Step::RemoveHalfAdded => {
                let id = self.replace.expect("set when this step is first");
                let c = RemoveMember {
                    node,
                    peers: self.peers.clone(),
                    id,
                    detail: format!("{id:x} (half-added)"),
                };
                (Box::new(c), Step::Wipe)
            }
            // The node is not a member: whatever etcd state it holds (an earlier membership, a
            // half-added start) must go, or the new member would start from stale data.
            Step::Wipe => {
                let c = Wipe {
                    node,
                    volume: self.volume.clone(),
                    detail: "stale container, volumes, certificates",
                    guard: Some(WipeGuard {
                        peers: self.peers.clone(),
                        replace: self.replace,
                    }),
                };
                (Box::new(c), Step::Certificates)
            }
            Step::Certificates => (write_certs(self.ctx(), &node), Step::Volume),
            Step::Volume => (CreateVolume::boxed(&node, &self.volume), Step::AddLearner),
            Step::AddLearner => {
                let c = AddLearner {
                    node,
                    peers: self.peers.clone(),
                };
                (Box::new(c), Step::Run)
            }
            Step::Run => {
                let members = self.learner.as_ref().map(|(_, m)| m.clone()).unwrap_or_default();
                let spec = run_spec(self.ctx(), &node, Some((&members, InitialClusterState::Existing)));
                let c = RunContainer::boxed(&node, spec, Some("etcd --initial-cluster-state=existing".into()));
                (c, Step::Promote)
            }
            Step::Promote => {
                let id = self.learner.as_ref().map(|(id, _)| *id)?;
                let c = Promote {
                    node,
                    peers: self.peers.clone(),
                    id,
                    limit: PROMOTE_LIMIT,
                };
                (Box::new(c), Step::Mark)
            }
            Step::Mark => (mark(&node), Step::Done),
            Step::Done => return None,
        };
        self.step = next;
        Some(cmd)
    }

    fn command_done(&mut self, outcome: Outcome) {
        if let Outcome::LearnerAdded { id, members } = outcome {
            self.learner = Some((id, members));
        }
    }
}

/// Registers the node as a learner (or finds the unstarted learner an earlier try registered).
pub struct AddLearner {
    /// The node.
    pub node: String,
    /// Endpoints (node addresses).
    pub peers: Vec<String>,
}

#[async_trait]
impl Commander for AddLearner {
    fn command(&self) -> RecordCommand {
        RecordCommand {
            name: "add-learner".into(),
            target: self.node.clone(),
            detail: "member add --learner".into(),
        }
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let cmd = self.command();
        let etcd = connect(infra, &cmd, &self.peers).await?;
        let (id, members) = etcd
            .add_learner_when_ready(&etcd_peer_url(&self.node), ADD_LIMIT)
            .await
            .map_err(|e| CommandError::new(&cmd, e))?;
        let members: Vec<String> = members.iter().filter_map(|m| m.address()).collect();
        crate::failpoint!("after-add-learner");
        Ok(Outcome::LearnerAdded { id, members })
    }
}
