//! `fathom scan SOURCE`: analyze one image and print its SBOM.

use std::process::ExitCode;

/// Arguments of `fathom scan`.
#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    /// Image source: `registry:REF` (default), `oci-dir:PATH[:REF]` or `docker-archive:PATH`.
    pub source: String,
}

/// Runs `fathom scan`.
pub fn run(_args: ScanArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("scan is not implemented yet")
}
