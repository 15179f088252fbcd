//! Prometheus metrics. (issue 3)
