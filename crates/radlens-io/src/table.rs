//! CSV tables with named columns, as the public datasets ship them.

use crate::error::{IoError, Result};
use std::path::Path;

/// Reads a CSV file (rows may have fewer fields than the header): header and rows.
pub(crate) fn read_csv(path: &Path) -> Result<(csv::StringRecord, Vec<csv::StringRecord>)> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| IoError::invalid(path, e.to_string()))?;
    let headers = rdr
        .headers()
        .map_err(|e| IoError::invalid(path, e.to_string()))?
        .clone();
    let rows = rdr
        .records()
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| IoError::invalid(path, e.to_string()))?;
    Ok((headers, rows))
}

/// Index of the column named `name`.
pub(crate) fn column(headers: &csv::StringRecord, name: &str, path: &Path) -> Result<usize> {
    headers
        .iter()
        .position(|h| h.trim() == name)
        .ok_or_else(|| IoError::invalid(path, format!("no '{name}' column")))
}
