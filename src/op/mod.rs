//! Operators (step machines) and commanders. (issue 3, 6)
