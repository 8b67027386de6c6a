//! `cloakroom-verify-token --jwks-url URL --issuer ISS --audience AUD`, with a service JWT as
//! the first line of standard input: exits 0 if [`cloakroom_verify::Verifier`] accepts it (and
//! prints its claims), 1 with the reason on standard error if not, 2 on a usage error.
//!
//! It is what a downstream service does on every request, as a command: `scale/run` checks
//! that a token minted by any instance verifies against the JWKS fetched from any other.

use std::process::ExitCode;

use cloakroom_verify::{Verifier, VerifierConfig};

#[tokio::main(flavor = "current_thread")]
#[allow(clippy::print_stdout)] // The claims of an accepted token are the command's output.
async fn main() -> ExitCode {
    let (jwks, issuer, audience) = match arguments(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "{e}\nusage: cloakroom-verify-token --jwks-url URL --issuer ISS --audience AUD < token"
            );
            return ExitCode::from(2);
        }
    };
    let mut token = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut token) {
        eprintln!("reading the token: {e}");
        return ExitCode::from(2);
    }
    let config = match VerifierConfig::new(&jwks, &issuer, &audience) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match Verifier::new(config).verify(token.trim()).await {
        Ok(claims) => {
            println!(
                "valid: sub={} preferred_username={} sid={}",
                claims.sub, claims.preferred_username, claims.sid
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("refused: {e}");
            ExitCode::from(1)
        }
    }
}

/// The three flags, each exactly once.
fn arguments(mut args: impl Iterator<Item = String>) -> Result<(String, String, String), String> {
    let (mut jwks, mut issuer, mut audience) = (None, None, None);
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--jwks-url" => &mut jwks,
            "--issuer" => &mut issuer,
            "--audience" => &mut audience,
            other => return Err(format!("unknown argument {other:?}")),
        };
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        if slot.replace(value).is_some() {
            return Err(format!("{flag} given twice"));
        }
    }
    match (jwks, issuer, audience) {
        (Some(j), Some(i), Some(a)) => Ok((j, i, a)),
        _ => Err("--jwks-url, --issuer and --audience are all required".to_owned()),
    }
}
