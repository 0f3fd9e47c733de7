//! Errors on one line, with their causes: the form every message a user reads takes, so the
//! kernel's own reason (kept as an error's source, never repeated in its message) ends it.

/// An error and its sources, joined with `: ` (aya's verifier errors carry the log in their
/// source).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read /x")]
    struct Outer(#[source] io::Error);

    #[test]
    fn the_cause_ends_the_line_once() {
        let e = Outer(io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(
            chain(&e),
            "cannot read /x: No such file or directory (os error 2)"
        );
    }
}
