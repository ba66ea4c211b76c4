//! SBOM validation by the upstream tools (CycloneDX's JSON schemas from cyclonedx-python-lib, SPDX's
//! spdx-tools), so tests check our documents against what consumers actually run.

use std::path::Path;
use std::process::Command;

/// What to install when the validators are missing.
pub const INSTALL: &str = "SBOM validators missing: run `python3 -m pip install 'cyclonedx-python-lib[json-validation]' spdx-tools` (scripts/deps.d/20-analyzer.sh does it)";

const CYCLONEDX: &str = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())
if errors:
    print(errors)
    sys.exit(1)
"#;

const SPDX: &str = r#"
import sys
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
messages = validate_full_spdx_document(parse_file(sys.argv[1]))
for m in messages:
    print(m.validation_message, m.context)
sys.exit(1 if messages else 0)
"#;

/// Validates a CycloneDX 1.5 JSON file; `Err` carries the validator's findings.
pub fn cyclonedx(file: &Path) -> Result<(), String> {
    python(CYCLONEDX, file)
}

/// Validates an SPDX 2.3 JSON file; `Err` carries the validator's findings.
pub fn spdx(file: &Path) -> Result<(), String> {
    python(SPDX, file)
}

fn python(script: &str, file: &Path) -> Result<(), String> {
    let available = Command::new("python3")
        .args([
            "-c",
            "import cyclonedx.validation.json, spdx_tools, jsonschema",
        ])
        .output()
        .is_ok_and(|out| out.status.success());
    if !available {
        return Err(INSTALL.to_string());
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(file)
        .output()
        .map_err(|e| format!("running python3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
