//! Vault PKI and secrets. (issue 4)
