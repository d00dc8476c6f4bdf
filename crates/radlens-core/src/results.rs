//! Result files: pretty JSON written from, and read back into, the same serde types, and
//! CSV tables whose fields are quoted only when they must be (RFC 4180).

use crate::atomic::write_atomic;
use crate::FileError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), FileError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| FileError::invalid(path, e))?;
    write_atomic(path, text.as_bytes())
}

/// Reads a JSON file into `T`, naming the file in any error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError::new(path, e))?;
    serde_json::from_str(&text).map_err(|e| FileError::invalid(path, e))
}

/// One CSV field, quoted when it holds a comma, a quote or a line break.
pub fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// A CSV table as text: the header, then one line per row of already formatted fields
/// (callers choose each number's precision).
pub fn csv_text<R, F>(header: &[&str], rows: impl IntoIterator<Item = R>) -> String
where
    R: IntoIterator<Item = F>,
    F: AsRef<str>,
{
    let line = |fields: Vec<String>| fields.join(",") + "\n";
    let mut text = line(header.iter().map(|h| csv_field(h).into_owned()).collect());
    for row in rows {
        text += &line(
            row.into_iter()
                .map(|f| csv_field(f.as_ref()).into_owned())
                .collect(),
        );
    }
    text
}

/// Writes a CSV table (see [`csv_text`]) atomically.
pub fn write_csv<R, F>(
    path: &Path,
    header: &[&str],
    rows: impl IntoIterator<Item = R>,
) -> Result<(), FileError>
where
    R: IntoIterator<Item = F>,
    F: AsRef<str>,
{
    write_atomic(path, csv_text(header, rows).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Summary {
        images: usize,
        dice: Option<f64>,
    }

    #[test]
    fn json_round_trips_through_the_same_type() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("summary.json");
        let s = Summary {
            images: 3,
            dice: Some(0.5),
        };
        write_json(&p, &s).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\n  \"images\": 3,\n  \"dice\": 0.5\n}"
        );
        assert_eq!(read_json::<Summary>(&p).unwrap(), s);
    }

    #[test]
    fn bad_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broken.json");
        std::fs::write(&p, "{\"images\": ").unwrap();
        let err = read_json::<Summary>(&p).unwrap_err();
        assert!(err.to_string().contains("broken.json"), "{err}");
        let err = read_json::<Summary>(&dir.path().join("missing.json")).unwrap_err();
        assert!(err.to_string().contains("missing.json"), "{err}");
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let text = csv_text(
            &["id", "view"],
            [["a", "PA"], ["b,c", "say \"AP\""], ["d", ""]],
        );
        assert_eq!(text, "id,view\na,PA\n\"b,c\",\"say \"\"AP\"\"\"\nd,\n");
    }
}
