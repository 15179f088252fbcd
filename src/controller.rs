//! The leader loop: load, probe, plan, run. (issue 3)
