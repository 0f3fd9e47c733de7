//! The guest's results port (the format is in init.sh), split into its parts, with the
//! profiler's JSON in it read through the `records` crate's types.
use std::collections::BTreeMap;

use records::{Doctor, Line};

/// What the guest sent, split into its parts.
#[derive(Debug, Default)]
pub(crate) struct GuestReport {
    /// `=== kv KEY VALUE` facts (the last one of a key wins).
    pub facts: BTreeMap<String, String>,
    /// `=== begin NAME` … `=== end NAME` files, line by line.
    pub sections: BTreeMap<String, Vec<String>>,
    /// `=== overhead MODE ROUND VALUE`: pages per second (`None` when the run printed none).
    pub overhead: Vec<(String, u32, Option<f64>)>,
    /// Whether `=== done` came: everything was sent.
    pub done: bool,
}

impl GuestReport {
    /// Parses the results port's text; lines outside the protocol are ignored.
    pub(crate) fn parse(text: &str) -> GuestReport {
        let mut report = GuestReport::default();
        let mut open: Option<(String, Vec<String>)> = None;
        for line in text.lines().map(|l| l.trim_end_matches('\r')) {
            if let Some((name, lines)) = open.as_mut() {
                if line.strip_prefix("=== end ") == Some(name.as_str()) {
                    if let Some((name, lines)) = open.take() {
                        report.sections.insert(name, lines);
                    }
                } else {
                    lines.push(line.to_owned());
                }
                continue;
            }
            let Some(rest) = line.strip_prefix("=== ") else {
                continue;
            };
            let (word, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            match word {
                "kv" => {
                    let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
                    report.facts.insert(key.to_owned(), value.trim().to_owned());
                }
                "begin" => open = Some((rest.to_owned(), Vec::new())),
                "overhead" => {
                    let mut words = rest.split_whitespace();
                    if let (Some(mode), Some(Ok(round))) =
                        (words.next(), words.next().map(str::parse))
                    {
                        let value = words.next().and_then(|v| v.parse().ok());
                        report.overhead.push((mode.to_owned(), round, value));
                    }
                }
                "done" => report.done = true,
                _ => {}
            }
        }
        // A section cut short (the guest died while sending it) still counts for what it has.
        if let Some((name, lines)) = open {
            report.sections.insert(name, lines);
        }
        report
    }

    /// A fact, if the guest sent it.
    pub(crate) fn fact(&self, key: &str) -> Option<&str> {
        self.facts.get(key).map(String::as_str)
    }

    /// A section on one line (empty when missing), for messages.
    pub(crate) fn one_line(&self, name: &str) -> String {
        self.sections
            .get(name)
            .map(|l| l.join(" / "))
            .unwrap_or_default()
    }

    /// The `profiler watch --json` lines of a section (lines that do not read are skipped:
    /// the checks say what is missing).
    pub(crate) fn json_lines(&self, name: &str) -> Vec<Line> {
        self.sections
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|l| Line::parse(l).ok())
            .collect()
    }

    /// A section read as the document of `profiler doctor --json` (printed on several lines).
    pub(crate) fn json_document(&self, name: &str) -> Option<Doctor> {
        Doctor::parse(&self.sections.get(name)?.join("\n")).ok()
    }
}
