//! `ckecli ca set|get`: CA certificates kept in etcd (`ca/<name>`).

use clap::Subcommand;

use super::{read_input, CliError, Ctx};
use crate::model::ValidationError;
use crate::storage::{Storage, CA_NAMES};

/// `ckecli ca ...`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Store a PEM certificate as CA NAME.
    Set {
        /// CA name: server, etcd-peer, etcd-client, kubernetes, kubernetes-aggregation, kubernetes-webhook.
        name: String,
        /// PEM file, or `-` for standard input.
        pem: String,
    },
    /// Print CA NAME's certificate.
    Get {
        /// CA name.
        name: String,
    },
}

fn check_name(name: &str) -> Result<(), CliError> {
    if CA_NAMES.contains(&name) {
        Ok(())
    } else {
        Err(CliError::Invalid {
            what: "CA name".into(),
            problems: ValidationError::single("name", format!("unknown CA {name:?}; known: {}", CA_NAMES.join(", "))),
        })
    }
}

/// Checks that `pem` holds exactly one parseable X.509 certificate.
pub fn check_certificate(pem: &str, what: &str) -> Result<(), CliError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let invalid = |reason: String| CliError::Invalid {
        what: what.into(),
        problems: ValidationError::single("", reason),
    };
    let certs: Vec<CertificateDer> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("not a PEM certificate: {e:?}")))?;
    match certs.as_slice() {
        [] => Err(invalid("no PEM certificate found".into())),
        [one] => webpki::EndEntityCert::try_from(one)
            .map(|_| ())
            .map_err(|e| invalid(format!("not a valid X.509 certificate: {e}"))),
        _ => Err(invalid(format!("{} certificates found; expected one", certs.len()))),
    }
}

/// Runs a `ca` command.
pub async fn run(ctx: &Ctx, cmd: CaCommand) -> Result<(), CliError> {
    match cmd {
        CaCommand::Set { name, pem } => {
            check_name(&name)?;
            let text = read_input(&pem)?;
            check_certificate(&text, &super::display_input(&pem))?;
            ctx.storage().await?.put_ca(&name, &text).await?;
            Ok(())
        }
        CaCommand::Get { name } => {
            check_name(&name)?;
            match ctx.storage().await?.get_ca(&name).await? {
                Some(pem) => {
                    print!("{pem}");
                    if !pem.ends_with('\n') {
                        println!();
                    }
                    Ok(())
                }
                None => Err(CliError::NotFound(format!(
                    "CA {name} is not set (run ckecli vault init)"
                ))),
            }
        }
    }
}
