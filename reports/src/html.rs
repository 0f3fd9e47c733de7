//! The HTML page: one self-contained file, with everything that came from the node escaped.
//!
//! [`Html`] only takes markup as `&'static str`; every string made at run time (names,
//! commands, paths, numbers) goes through [`Html::text`], which escapes it. A process named
//! `<script>alert(1)</script>` therefore cannot become markup, and the page's Content Security
//! Policy (no scripts, images only from `data:`) would stop it running even if it did.

/// HTML under construction.
#[derive(Default)]
pub struct Html {
    out: String,
}

/// `text` with `& < > " '` escaped: safe in element content and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and newline are not valid in HTML text.
            c if c.is_control() && c != '\t' && c != '\n' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

impl Html {
    /// Markup written into the program.
    pub fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.out.push_str(markup);
        self
    }

    /// Text, escaped.
    pub fn text(&mut self, text: impl AsRef<str>) -> &mut Self {
        self.out.push_str(&escape(text.as_ref()));
        self
    }

    /// `<tag>text</tag>` with `tag` written into the program.
    pub fn element(
        &mut self,
        open: &'static str,
        text: impl AsRef<str>,
        close: &'static str,
    ) -> &mut Self {
        self.raw(open).text(text).raw(close)
    }

    /// A table row of cells, each escaped.
    pub fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Self {
        self.raw("<tr>");
        for cell in cells {
            self.element("<td>", cell, "</td>");
        }
        self.raw("</tr>\n")
    }

    /// A table header row.
    pub fn header_row(&mut self, cells: &[&'static str]) -> &mut Self {
        self.raw("<tr>");
        for cell in cells {
            self.raw("<th>").raw(cell).raw("</th>");
        }
        self.raw("</tr>\n")
    }

    /// An inline PNG image.
    pub fn png(&mut self, png: &crate::chart::Png, alt: &str) -> &mut Self {
        use base64::Engine as _;
        self.raw("<img src=\"data:image/png;base64,")
            // Base64 is letters, digits, `+`, `/` and `=`: nothing to escape.
            .text(base64::engine::general_purpose::STANDARD.encode(&png.bytes))
            .raw("\" width=\"")
            .text(png.width.to_string())
            .raw("\" height=\"")
            .text(png.height.to_string())
            .raw("\" alt=\"")
            .text(alt)
            .raw("\">\n")
    }

    /// The page so far.
    pub fn finish(self) -> String {
        self.out
    }
}

/// The start of the page, up to the opening of its body.
pub fn page_start(html: &mut Html, title: &str) {
    html.raw(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         img-src data:; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>",
    )
    .text(title)
    .raw("</title>\n<style>\n")
    .raw(STYLE)
    .raw("</style>\n</head>\n<body>\n");
}

/// The end of the page.
pub fn page_end(html: &mut Html) {
    html.raw("</body>\n</html>\n");
}

const STYLE: &str = "\
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; \
max-width: 1260px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6rem 0 1.2rem; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
.wide { overflow-x: auto; }
#overview td:first-child { word-break: break-all; min-width: 10rem; max-width: 24rem; }
.damage { border: 2px solid #b00; background: #fff0f0; padding: 0.7rem 1rem; margin: 1rem 0; }
.note { border: 1px solid #c90; background: #fffbe8; padding: 0.5rem 1rem; margin: 1rem 0; }
.risk { border: 2px solid #b00; background: #fff0f0; padding: 0.6rem 1rem; margin: 0.8rem 0; }
.first { border-left: 5px solid #c60; background: #fff6e8; padding: 0.4rem 0.8rem; margin: 0.4rem 0; }
.kill { border-left: 5px solid #a00; padding: 0.2rem 0 0.2rem 1rem; margin: 1rem 0 1.6rem; }
section.container { border-top: 1px solid #ddd; margin-top: 2rem; }
img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0; }
code { background: #f4f4f4; padding: 0 0.2rem; word-break: break-all; }
ul.reasoning { margin-top: 0.2rem; }
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_become_markup() {
        assert_eq!(
            escape("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(escape("a\"b'c&d"), "a&quot;b&#39;c&amp;d");
        assert_eq!(escape("bell\u{7}"), "bell\u{FFFD}");
        let mut html = Html::default();
        html.row(["<b>", "ok"]);
        assert_eq!(html.finish(), "<tr><td>&lt;b&gt;</td><td>ok</td></tr>\n");
    }
}
