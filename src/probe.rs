//! Node and cluster probe. (issue 5)
