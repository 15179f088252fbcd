//! The pure planner. (issue 6)
