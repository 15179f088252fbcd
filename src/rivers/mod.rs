//! rivers: a small TCP load balancer run on every node. (issue 6)
