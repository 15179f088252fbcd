//! cke-rs: a Kubernetes cluster manager for on-premises clusters, compatible with Cybozu CKE.
//!
//! Layers (see `docs/design.md`): [`model`] (pure types and validation), [`storage`] (management etcd),
//! [`planner`] (pure planning), [`op`] (operators and commanders), [`agent`] (SSH and containers),
//! [`pki`] (Vault), [`controller`] (the leader loop), [`server`] (HTTP). Binaries stay thin and call
//! into [`cli`] and [`daemon`].

pub mod agent;
pub mod cli;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod leader;
pub mod managed_etcd;
pub mod metrics;
pub mod model;
pub mod op;
pub mod pki;
pub mod planner;
pub mod probe;
pub mod rivers;
pub mod server;
pub mod storage;
pub mod testing;
