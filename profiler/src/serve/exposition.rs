//! `/metrics` in the format the scraper asks for: OpenMetrics (what `prometheus-client`
//! writes) when its `Accept` names it, else the Prometheus text format 0.0.4 that every
//! scraper and `curl` reads.
//!
//! The two differ, for what the agent exports, only in how a counter's family is named:
//! OpenMetrics names the family `foo` (its sample is `foo_total`) and ends with `# EOF`; the
//! text format names the family after its sample, `foo_total`, and has no end marker.
use std::fmt;

use prometheus_client::{encoding::text, registry::Registry};

/// OpenMetrics text 1.0.0.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus text 0.0.4.
pub(crate) const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// OpenMetrics text.
    OpenMetrics,
    /// Prometheus text 0.0.4.
    Text,
}

impl Format {
    /// The format a request's `Accept` header asks for: OpenMetrics only when named (and not
    /// refused with `q=0`), the text format otherwise.
    pub(crate) fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let wants = accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        });
        if wants {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// The `Content-Type` of a response in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::Text => TEXT,
        }
    }
}

/// Renders the registry in `format`.
pub(crate) fn render(registry: &Registry, format: Format) -> Result<String, fmt::Error> {
    let mut out = String::with_capacity(64 * 1024);
    match format {
        Format::OpenMetrics => text::encode(&mut out, registry)?,
        Format::Text => {
            let mut open = String::with_capacity(64 * 1024);
            text::encode_registry(&mut open, registry)?;
            to_text_format(&open, &mut out);
        }
    }
    Ok(out)
}

/// Rewrites OpenMetrics lines (without `# EOF`) into the text format: a counter family's
/// `# HELP` and `# TYPE` name its `_total` sample; `# UNIT` lines (which the text format
/// does not have) are dropped; everything else is the same.
fn to_text_format(open: &str, out: &mut String) {
    let mut lines = open.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(help) = line.strip_prefix("# HELP ") {
            let name = help.split(' ').next().unwrap_or_default();
            let counter = lines.peek().is_some_and(|next| {
                next.strip_prefix("# TYPE ")
                    .and_then(|t| t.strip_prefix(name))
                    .is_some_and(|rest| rest == " counter")
            });
            if counter {
                out.push_str("# HELP ");
                out.push_str(name);
                out.push_str("_total");
                out.push_str(&help[name.len()..]);
                out.push('\n');
                lines.next();
                out.push_str("# TYPE ");
                out.push_str(name);
                out.push_str("_total counter\n");
                continue;
            }
        }
        if let Some(kind) = line
            .strip_prefix("# TYPE ")
            .and_then(|t| t.rsplit_once(' '))
            .map(|(_, kind)| kind)
        {
            // OpenMetrics' `unknown` is the text format's `untyped`.
            if kind == "unknown" {
                out.push_str(&line[..line.len() - kind.len()]);
                out.push_str("untyped\n");
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

    #[test]
    fn openmetrics_only_when_asked() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")),
            Format::Text
        );
        // What Prometheus 2.x sends.
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0")),
            Format::Text
        );
    }

    #[test]
    fn counters_are_named_by_their_sample_in_the_text_format() {
        let mut registry = Registry::with_prefix("p");
        let kills: Counter = Counter::default();
        kills.inc();
        registry.register("oom_kills", "OOM kills", kills);
        let usage: Gauge = Gauge::default();
        usage.set(42);
        registry.register("usage_bytes", "Usage", usage);

        let text = render(&registry, Format::Text).expect("renders");
        assert_eq!(
            text,
            "# HELP p_oom_kills_total OOM kills.\n# TYPE p_oom_kills_total counter\n\
             p_oom_kills_total 1\n# HELP p_usage_bytes Usage.\n# TYPE p_usage_bytes gauge\n\
             p_usage_bytes 42\n"
        );
        let open = render(&registry, Format::OpenMetrics).expect("renders");
        assert!(open.contains("# TYPE p_oom_kills counter\np_oom_kills_total 1\n"));
        assert!(open.ends_with("# EOF\n"));
    }
}
