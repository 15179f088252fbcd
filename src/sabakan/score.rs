//! CKE's machine scores (`sabakan/score.go`): control planes are chosen by rack spread and
//! remaining lifetime, and removed lowest score first, healthy ones last. Pure functions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::machine::Machine;

/// More than the machines a rack can hold, plus one: the rack-spread score stays positive.
pub const MAX_COUNT_PER_RACK: i64 = 100;
/// Added to a healthy machine's score when choosing a control plane to remove.
pub const HEALTHY_SCORE: i64 = 1000;

/// +1 for each of more than 250, 500 and 1000 days left; -1 for each of more than 250, 500 and 1000
/// days past the retire date.
pub fn score_by_days(days: i64) -> i64 {
    let mut score = 0;
    for limit in [250, 500, 1000] {
        if days > limit {
            score += 1;
        }
        if days < -limit {
            score -= 1;
        }
    }
    score
}

/// Whole days from `now` to the machine's retire date, truncated toward zero as CKE computes them.
pub fn days_before_retire(m: &Machine, now: DateTime<Utc>) -> i64 {
    let secs = (m.spec.retire_date - now).num_milliseconds() as f64 / 1000.0;
    (secs / 3600.0 / 24.0) as i64
}

/// `(100 - machines already counted in its rack) * 10 + days score`.
pub fn score_machine(m: &Machine, rack_count: &HashMap<i64, i64>, now: DateTime<Utc>) -> i64 {
    let rack = MAX_COUNT_PER_RACK - rack_count.get(&m.spec.rack).copied().unwrap_or(0);
    rack * 10 + score_by_days(days_before_retire(m, now))
}

/// [`score_machine`], plus [`HEALTHY_SCORE`] when the machine is healthy.
pub fn score_machine_with_health(m: &Machine, rack_count: &HashMap<i64, i64>, now: DateTime<Utc>) -> i64 {
    let score = score_machine(m, rack_count, now);
    if m.is_healthy() {
        score + HEALTHY_SCORE
    } else {
        score
    }
}

/// The healthy machines of `role` (any role when empty), in their order.
pub fn filter_healthy_by_role<'a>(ms: impl IntoIterator<Item = &'a Machine>, role: &str) -> Vec<&'a Machine> {
    ms.into_iter()
        .filter(|m| m.is_healthy() && (role.is_empty() || m.spec.role == role))
        .collect()
}
