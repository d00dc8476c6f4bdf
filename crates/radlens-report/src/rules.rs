//! Rule files: `[section]` headers, each followed by one regular expression per line;
//! `#` starts a comment. Patterns match case-insensitively on whole words.

use crate::error::{ReportError, Result};
use regex::Regex;
use std::path::Path;

/// One `[header]` and its compiled patterns.
#[derive(Debug, Clone)]
pub struct RuleSection {
    pub header: String,
    pub patterns: Vec<Regex>,
}

/// Parse the rule file `name` (named in errors) from its text.
pub fn parse_rules(name: &str, text: &str) -> Result<Vec<RuleSection>> {
    let mut sections: Vec<RuleSection> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let bad = |why: String| ReportError::Rules {
            file: name.to_string(),
            line: i + 1,
            reason: why,
        };
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(h) = line.strip_prefix('[') {
            let header = h
                .strip_suffix(']')
                .ok_or_else(|| bad(format!("header '{line}' lacks its ']'")))?;
            sections.push(RuleSection {
                header: header.trim().to_string(),
                patterns: Vec::new(),
            });
            continue;
        }
        let section = sections
            .last_mut()
            .ok_or_else(|| bad(format!("pattern '{line}' before any [section]")))?;
        section
            .patterns
            .push(word_regex(line).map_err(|e| bad(e.to_string()))?);
    }
    Ok(sections)
}

/// A case-insensitive regex for `pattern` as whole words.
pub fn word_regex(pattern: &str) -> std::result::Result<Regex, regex::Error> {
    Regex::new(&format!(r"(?i)\b(?:{pattern})\b"))
}

/// The rule file `file_name` from `dir` when given, else radlens' built-in copy.
pub fn load_rules(dir: Option<&Path>, file_name: &str, builtin: &str) -> Result<Vec<RuleSection>> {
    match dir {
        None => parse_rules(file_name, builtin),
        Some(d) => {
            let path = d.join(file_name);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ReportError::corpus(&path, format!("cannot read rule file: {e}")))?;
            parse_rules(&path.display().to_string(), &text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_patterns_and_comments() {
        let s = parse_rules("r.txt", "# c\n[A b]\nfoo|bar  # x\n\n[C]\nheart size\n").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].header, "A b");
        assert!(s[0].patterns[0].is_match("A BAR here"));
        assert!(!s[0].patterns[0].is_match("foobar"), "whole words only");
        assert!(s[1].patterns[0].is_match("Heart Size"));
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let e = parse_rules("r.txt", "x\n").unwrap_err().to_string();
        assert!(
            e.contains("r.txt:1") && e.contains("before any [section]"),
            "{e}"
        );
        let e = parse_rules("r.txt", "[a]\n(unclosed\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("r.txt:2"), "{e}");
        let e = parse_rules("r.txt", "[a\n").unwrap_err().to_string();
        assert!(e.contains("lacks its ']'"), "{e}");
    }
}
