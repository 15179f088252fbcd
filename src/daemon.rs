//! The cke daemon entry point (main_impl). (issue 3)
