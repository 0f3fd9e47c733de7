//! The metric names a PromQL expression reads, for checking that dashboards and alerts only
//! ask for metrics the agent exports.
//!
//! Not a parser: a tokenizer that knows which identifiers cannot be metric names. Skipped are
//! function and aggregation names (an identifier followed by `(`, and the aggregation operators
//! also before `by`/`without`), keywords and set operators, label names in `{...}` matchers and
//! in `by (...)`, `without (...)`, `on (...)`, `ignoring (...)`, `group_left (...)` and
//! `group_right (...)` lists, strings, numbers and durations, whatever stands in `[...]` (range,
//! subquery), what follows `offset` and `@`, comments, and Grafana's variables (`$node`,
//! `${datasource}`, `${node:regex}`, `[[node]]`, `$__rate_interval`). A metric named inside the
//! braces (`{__name__="up"}`, or Prometheus 3's `{"metric.name"}`) counts. Grafana's
//! `label_values(metric, label)` and `label_values(label)` count the metric, not the label.

use std::collections::BTreeSet;

/// Keywords and operators that look like identifiers; never metric names.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "atan2",
    // Numbers.
    "inf",
    "nan",
];

/// Aggregation operators: they may be followed by `by`/`without` instead of `(`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// One token of a PromQL expression, as far as metric names are concerned.
#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// A name: metric, function, keyword or label.
    Ident(String),
    /// A string literal, unquoted.
    Str(String),
    /// A number or a duration.
    Number,
    /// A Grafana variable.
    Variable,
    /// One character of punctuation or an operator.
    Punct(char),
}

/// The metric names `expr` reads (see the module's documentation for what is skipped).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let tokens = tokenize(expr);
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Punct('{') => {
                let end = matching(&tokens, i, '{', '}');
                names.extend(names_in_matchers(&tokens[i + 1..end]));
                i = end + 1;
            }
            Token::Punct('[') => i = matching(&tokens, i, '[', ']') + 1,
            Token::Ident(word) => {
                let lower = word.to_ascii_lowercase();
                let next = tokens.get(i + 1);
                if LABEL_LISTS.contains(&lower.as_str()) && next == Some(&Token::Punct('(')) {
                    i = matching(&tokens, i + 1, '(', ')') + 1;
                } else if lower == "offset" {
                    i = skip_modifier(&tokens, i + 1);
                } else if word == "label_values" && next == Some(&Token::Punct('(')) {
                    let end = matching(&tokens, i + 1, '(', ')');
                    // The last argument is a label name; a first one (if any) is a selector.
                    let arguments = &tokens[i + 2..end];
                    let last_comma = top_level_commas(arguments).last().copied();
                    if let Some(comma) = last_comma {
                        names.extend(metric_names_of(&arguments[..comma]));
                    }
                    i = end + 1;
                } else {
                    let is_call = next == Some(&Token::Punct('('));
                    if !is_call
                        && !KEYWORDS.contains(&lower.as_str())
                        && !AGGREGATIONS.contains(&lower.as_str())
                    {
                        names.insert(word.clone());
                    }
                    i += 1;
                }
            }
            Token::Punct('@') => i = skip_modifier(&tokens, i + 1),
            _ => i += 1,
        }
    }
    names
}

/// [`metric_names`] of a token slice (the first argument of `label_values`).
fn metric_names_of(tokens: &[Token]) -> BTreeSet<String> {
    // Re-rendering is simpler than threading slices through the scanner: only identifiers,
    // strings and punctuation matter to it.
    let mut text = String::new();
    for token in tokens {
        match token {
            Token::Ident(word) => text.push_str(word),
            Token::Str(s) => {
                text.push('"');
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        text.push('\\');
                    }
                    text.push(c);
                }
                text.push('"');
            }
            Token::Number => text.push('0'),
            Token::Variable => text.push_str("$v"),
            Token::Punct(c) => text.push(*c),
        }
        text.push(' ');
    }
    metric_names(&text)
}

/// The metric names given inside a `{...}` matcher list: `__name__="x"` and a lone string.
fn names_in_matchers(tokens: &[Token]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut start = 0;
    let mut ends = top_level_commas(tokens);
    ends.push(tokens.len());
    for end in ends {
        match &tokens[start..end] {
            [Token::Str(name)] => {
                names.insert(name.clone());
            }
            [Token::Ident(label) | Token::Str(label), Token::Punct('='), Token::Str(name)]
                if label == "__name__" =>
            {
                names.insert(name.clone());
            }
            _ => {}
        }
        start = end + 1;
    }
    names
}

/// Indexes of the commas of `tokens` outside any brackets.
fn top_level_commas(tokens: &[Token]) -> Vec<usize> {
    let mut depth = 0_i32;
    let mut commas = Vec::new();
    for (index, token) in tokens.iter().enumerate() {
        match token {
            Token::Punct('(' | '[' | '{') => depth += 1,
            Token::Punct(')' | ']' | '}') => depth -= 1,
            Token::Punct(',') if depth == 0 => commas.push(index),
            _ => {}
        }
    }
    commas
}

/// The index of the bracket closing the one at `open`, or the number of tokens if it is not
/// closed (so `open + 1..` that index is always a valid range).
fn matching(tokens: &[Token], open: usize, opening: char, closing: char) -> usize {
    let mut depth = 0_usize;
    for (index, token) in tokens.iter().enumerate().skip(open) {
        if *token == Token::Punct(opening) {
            depth += 1;
        } else if *token == Token::Punct(closing) {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                return index;
            }
        }
    }
    tokens.len()
}

/// Skips what `offset` or `@` takes: a sign, then a duration, number or variable, or a call
/// such as `start()`. Returns the index after it.
fn skip_modifier(tokens: &[Token], mut i: usize) -> usize {
    if matches!(tokens.get(i), Some(Token::Punct('-' | '+'))) {
        i += 1;
    }
    match tokens.get(i) {
        Some(Token::Number | Token::Variable) => i + 1,
        Some(Token::Ident(_)) if tokens.get(i + 1) == Some(&Token::Punct('(')) => {
            matching(tokens, i + 1, '(', ')') + 1
        }
        _ => i,
    }
}

/// Splits `expr` into tokens; unknown characters become punctuation.
fn tokenize(expr: &str) -> Vec<Token> {
    let chars: Vec<char> = expr.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            // A comment, to the end of the line.
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            let (text, next) = string(&chars, i);
            tokens.push(Token::Str(text));
            i = next;
        } else if c == '$' {
            i = variable_end(&chars, i + 1);
            tokens.push(Token::Variable);
        } else if c == '[' && chars.get(i + 1) == Some(&'[') {
            // Grafana's old `[[name]]` variable syntax.
            let mut j = i + 2;
            while j + 1 < chars.len() && !(chars[j] == ']' && chars[j + 1] == ']') {
                j += 1;
            }
            tokens.push(Token::Variable);
            i = (j + 2).min(chars.len());
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            i = number_end(&chars, i);
            tokens.push(Token::Number);
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

/// The string literal starting at `start` (its quote), unescaped, and the index after it.
fn string(chars: &[char], start: usize) -> (String, usize) {
    let quote = chars[start];
    let mut text = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i];
        if c == quote {
            return (text, i + 1);
        }
        if c == '\\' && quote != '`' {
            if let Some(&escaped) = chars.get(i + 1) {
                text.push(escaped);
                i += 2;
                continue;
            }
        }
        text.push(c);
        i += 1;
    }
    (text, i)
}

/// The index after a Grafana variable whose `$` is just before `i`: `name`, `{name}` or
/// `{name:format}`.
fn variable_end(chars: &[char], mut i: usize) -> usize {
    if chars.get(i) == Some(&'{') {
        while i < chars.len() && chars[i] != '}' {
            i += 1;
        }
        return (i + 1).min(chars.len());
    }
    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
        i += 1;
    }
    i
}

/// The index after a number or duration starting at `i`: digits, `.`, hexadecimal digits,
/// unit letters (`1h30m`), an exponent with its sign (`1e-3`).
fn number_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        let c = chars[i];
        let exponent_sign =
            (c == '-' || c == '+') && i > 0 && matches!(chars[i - 1], 'e' | 'E') && {
                // Only after a mantissa (`1e-3`), not after a unit (`5m`): the `e` of a
                // duration is never followed by a sign.
                chars[..i - 1]
                    .last()
                    .is_some_and(|d| d.is_ascii_digit() || *d == '.')
            };
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' || exponent_sign {
            i += 1;
        } else {
            break;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::metric_names;

    #[track_caller]
    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).into_iter().collect()
    }

    #[test]
    fn a_plain_selector_is_its_metric() {
        assert_eq!(names("up"), ["up"]);
        assert_eq!(names(r#"up{job="x"}"#), ["up"]);
        assert_eq!(names("node:memory:ratio"), ["node:memory:ratio"]);
    }

    #[test]
    fn functions_aggregations_and_label_lists_are_not_metrics() {
        assert_eq!(
            names(
                r#"sum by (namespace, pod) (rate(profiler_container_memory_charged_bytes_total{container!=""}[5m]))"#
            ),
            ["profiler_container_memory_charged_bytes_total"]
        );
        assert_eq!(
            names("sum without (instance, job) (x) / ignoring (cause) group_left y"),
            ["x", "y"]
        );
        assert_eq!(names("topk by (node) (5, a)"), ["a"]);
        assert_eq!(
            names("count_values(\"version\", build_info)"),
            ["build_info"]
        );
        assert_eq!(
            names("histogram_quantile(0.99, sum by (le) (rate(h_bucket[1m])))"),
            ["h_bucket"]
        );
    }

    #[test]
    fn joins_keep_both_sides_but_not_their_label_lists() {
        assert_eq!(
            names(
                "profiler_container_memory_working_set_bytes * on(namespace, pod) \
                 group_left(node) kube_pod_info"
            ),
            [
                "kube_pod_info",
                "profiler_container_memory_working_set_bytes"
            ]
        );
        assert_eq!(
            names("a > bool 0 and on() b or c unless ignoring(x) d"),
            ["a", "b", "c", "d"]
        );
    }

    #[test]
    fn matchers_strings_and_durations_are_skipped() {
        assert_eq!(
            names(r#"x{a="by (\"nested\") y", b=~'z|w', c!~`q`}[5m:30s] offset -1h30m"#),
            ["x"]
        );
        assert_eq!(
            names("max_over_time(deriv(rate(x[1m])[5m:1m])[10m:])"),
            ["x"]
        );
        assert_eq!(
            names("x @ start() + y @ 1609746000 - z offset 5m"),
            ["x", "y", "z"]
        );
        assert_eq!(names("1e3 * x - 0x1F + Inf - NaN + 1.5e-3 + .5"), ["x"]);
        assert_eq!(names("x # a comment with words\n + y"), ["x", "y"]);
    }

    #[test]
    fn metric_names_inside_braces_count() {
        assert_eq!(names(r#"{__name__="up", job="a"}"#), ["up"]);
        assert_eq!(names(r#"{"my.metric", job="a"}"#), ["my.metric"]);
        assert_eq!(names(r#"{__name__=~"up|down"}"#), Vec::<String>::new());
    }

    #[test]
    fn grafana_variables_are_not_metrics() {
        assert_eq!(
            names(
                r#"increase(profiler_container_oom_kills_total{node=~"$node", pod=~"${pod:regex}"}[$__rate_interval])"#
            ),
            ["profiler_container_oom_kills_total"]
        );
        assert_eq!(
            names("sum(rate(x[${__interval}])) / $scale + [[legacy]] * y"),
            ["x", "y"]
        );
        assert_eq!(names("topk($k, x) offset $shift"), ["x"]);
    }

    #[test]
    fn label_values_names_its_metric_not_its_label() {
        assert_eq!(
            names("label_values(profiler_build_info, node)"),
            ["profiler_build_info"]
        );
        assert_eq!(
            names(
                r#"label_values(profiler_container_memory_usage_bytes{node=~"$node"}, namespace)"#
            ),
            ["profiler_container_memory_usage_bytes"]
        );
        assert_eq!(names("label_values(node)"), Vec::<String>::new());
        assert_eq!(names("query_result(topk(5, x))"), ["x"]);
    }

    #[test]
    fn nothing_in_an_empty_or_numeric_expression() {
        assert!(metric_names("").is_empty());
        assert!(metric_names("vector(1) + scalar(time())").is_empty());
        assert!(metric_names("-5 * 2").is_empty());
    }

    #[test]
    fn unclosed_brackets_do_not_panic() {
        assert_eq!(names("x{"), ["x"]);
        assert_eq!(names("rate(x[5m"), ["x"]);
        assert_eq!(names("sum by (a"), Vec::<String>::new());
        assert_eq!(names("label_values("), Vec::<String>::new());
        assert_eq!(names(r#"x{a="unterminated"#), ["x"]);
    }
}
