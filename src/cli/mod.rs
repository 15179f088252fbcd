//! `ckecli`: the operators' command line. It talks to the management etcd and Vault, never to `cke`.
//! One file per command group; [`main_impl`] parses, runs and maps errors to exit codes
//! (0 success, 1 runtime failure, 2 usage or invalid input).
