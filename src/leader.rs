//! Leader election in the management etcd. (issue 3)
