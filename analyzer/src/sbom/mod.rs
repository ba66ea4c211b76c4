//! SBOM writers: our own JSON document, CycloneDX 1.5 JSON, SPDX 2.3 JSON and a human table.
//!
//! Every writer converts from [`ImageAnalysis`]; the internal model never depends on a wire format.

mod cyclonedx;
mod spdx;
mod table;

use std::io::Write;

use crate::analyze::ImageAnalysis;

/// Output formats of `fathom scan -o` and `fathom results -o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The [`ImageAnalysis`] document itself (`fathom.analysis/v1`).
    Json,
    /// CycloneDX 1.5 JSON.
    CycloneDxJson,
    /// SPDX 2.3 JSON.
    SpdxJson,
    /// An aligned NAME / VERSION / TYPE table.
    Table,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Format::Json),
            "cyclonedx-json" | "cyclonedx" => Ok(Format::CycloneDxJson),
            "spdx-json" | "spdx" => Ok(Format::SpdxJson),
            "table" => Ok(Format::Table),
            other => Err(format!(
                "unknown format {other:?}; expected json, cyclonedx-json, spdx-json or table"
            )),
        }
    }
}

/// Writes `analysis` in `format`.
pub fn write(analysis: &ImageAnalysis, format: Format, mut out: impl Write) -> std::io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, analysis).map_err(std::io::Error::other)?
        }
        Format::CycloneDxJson => {
            serde_json::to_writer_pretty(&mut out, &cyclonedx::document(analysis))
                .map_err(std::io::Error::other)?
        }
        Format::SpdxJson => serde_json::to_writer_pretty(&mut out, &spdx::document(analysis))
            .map_err(std::io::Error::other)?,
        Format::Table => table::write(analysis, &mut out)?,
    }
    if format != Format::Table {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Now, as RFC 3339 UTC with seconds (what both SBOM formats want in their creation info).
fn timestamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// A name for the document: the reference when there is one, else the manifest digest.
fn image_name(analysis: &ImageAnalysis) -> String {
    if analysis.image.reference.is_empty() {
        analysis.image.manifest_digest.clone()
    } else {
        analysis.image.reference.clone()
    }
}
