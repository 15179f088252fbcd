//! Reaching the nodes: SSH agent with verified host keys and the container engine. (issue 5)
