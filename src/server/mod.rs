//! HTTP endpoint: health, version, status, metrics. (issue 3)
