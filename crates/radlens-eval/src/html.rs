//! Self-contained HTML report pages: headings, text, tables and inline SVG plots,
//! styles in the page, no scripts and no external resources, so a report opens
//! offline from disk and can be mailed or archived as one file.

/// `s` with the characters HTML gives meaning to replaced by entities.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTML page built section by section; every text argument is escaped.
#[derive(Debug, Clone)]
pub struct Page {
    title: String,
    body: String,
}

const STYLE: &str =
    "body{font-family:sans-serif;max-width:1120px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}\
th,td{border:1px solid #ccc;padding:.2em .6em;text-align:right}\
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}\
.figures{display:flex;flex-wrap:wrap;gap:.6em}figure{margin:0}\
figcaption{font-size:.85em;color:#555;max-width:520px}.note{color:#555;font-size:.9em}";

impl Page {
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_string(),
            body: String::new(),
        }
    }

    /// A section heading.
    pub fn heading(&mut self, text: &str) -> &mut Self {
        self.body.push_str(&format!("<h2>{}</h2>\n", escape(text)));
        self
    }

    /// A paragraph of text.
    pub fn paragraph(&mut self, text: &str) -> &mut Self {
        self.body.push_str(&format!("<p>{}</p>\n", escape(text)));
        self
    }

    /// A paragraph in the muted style of notes (protocols, caveats).
    pub fn note(&mut self, text: &str) -> &mut Self {
        self.body
            .push_str(&format!("<p class=\"note\">{}</p>\n", escape(text)));
        self
    }

    /// A table with a header row.
    pub fn table<R: AsRef<[String]>>(&mut self, header: &[&str], rows: &[R]) -> &mut Self {
        let cells = |tag: &str, row: &mut dyn Iterator<Item = &str>| -> String {
            row.map(|c| format!("<{tag}>{}</{tag}>", escape(c)))
                .collect()
        };
        self.body.push_str("<table>\n<tr>");
        self.body
            .push_str(&cells("th", &mut header.iter().copied()));
        self.body.push_str("</tr>\n");
        for r in rows {
            self.body.push_str("<tr>");
            self.body
                .push_str(&cells("td", &mut r.as_ref().iter().map(String::as_str)));
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</table>\n");
        self
    }

    /// A row of figures, each an SVG document (as [`crate::plot`] draws them) with
    /// its caption.
    pub fn figures(&mut self, figures: &[(String, String)]) -> &mut Self {
        self.body.push_str("<div class=\"figures\">\n");
        for (svg, caption) in figures {
            // The XML prolog is not allowed inside HTML; the <svg> element is.
            let start = svg.find("<svg").unwrap_or(0);
            self.body.push_str(&format!(
                "<figure>{}<figcaption>{}</figcaption></figure>\n",
                &svg[start..],
                escape(caption)
            ));
        }
        self.body.push_str("</div>\n");
        self
    }

    /// The whole document.
    pub fn finish(&self) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n{}</body>\n</html>\n",
            self.body,
            t = escape(&self.title)
        )
    }
}

/// `v` with `digits` decimals, or "-" when it is missing or not finite.
pub fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "-".into(),
    }
}

/// `mean [low, high]` with `digits` decimals ("-" parts when not finite).
pub fn fmt_ci(mean: f64, ci: Option<[f64; 2]>, digits: usize) -> String {
    match ci {
        Some([lo, hi]) if lo.is_finite() && hi.is_finite() => format!(
            "{} [{lo:.digits$}, {hi:.digits$}]",
            fmt_opt(Some(mean), digits)
        ),
        _ => fmt_opt(Some(mean), digits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_the_page_is_complete() {
        let mut p = Page::new("a <b> & c");
        p.heading("x<y")
            .paragraph("\"quoted\" 'text'")
            .table(&["k", "v"], &[vec!["<td>".to_string(), "1".to_string()]])
            .figures(&[(
                "<?xml version=\"1.0\"?><svg width=\"1\"></svg>".to_string(),
                "cap & more".to_string(),
            )]);
        let html = p.finish();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>a &lt;b&gt; &amp; c</title>"));
        assert!(html.contains("<h2>x&lt;y</h2>"));
        assert!(html.contains("&quot;quoted&quot; &#39;text&#39;"));
        assert!(html.contains("<td>&lt;td&gt;</td>"));
        assert!(!html.contains("<?xml"), "prolog stripped");
        assert!(html.contains("<figure><svg width=\"1\"></svg><figcaption>cap &amp; more"));
        assert!(html.trim_end().ends_with("</html>"));
    }

    #[test]
    fn numbers_with_intervals() {
        assert_eq!(fmt_ci(0.97, Some([0.96, 0.98]), 3), "0.970 [0.960, 0.980]");
        assert_eq!(fmt_ci(0.97, Some([f64::NAN, 0.98]), 2), "0.97");
        assert_eq!(fmt_opt(None, 2), "-");
        assert_eq!(fmt_opt(Some(f64::INFINITY), 2), "-");
    }
}
