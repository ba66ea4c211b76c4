//! The human table: one package per line, aligned like Syft's.

use std::io::Write;

use crate::analyze::ImageAnalysis;

/// Writes NAME / VERSION / TYPE / LAYER columns.
pub(super) fn write(analysis: &ImageAnalysis, out: &mut impl Write) -> std::io::Result<()> {
    let rows: Vec<[String; 4]> = analysis
        .packages
        .iter()
        .map(|p| {
            [
                p.package.name.clone(),
                p.package.version.clone(),
                p.package.package_type.as_str().to_string(),
                p.introduced_in.index.to_string(),
            ]
        })
        .collect();
    let header = ["NAME", "VERSION", "TYPE", "LAYER"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 4], out: &mut dyn Write| -> std::io::Result<()> {
        writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
    };
    line(header, out)?;
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3]], out)?;
    }
    if rows.is_empty() {
        writeln!(out, "(no packages found)")?;
    }
    Ok(())
}
