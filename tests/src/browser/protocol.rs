//! The DevTools protocol on the pipe to Chromium: commands written to its fd 3 as
//! NUL-terminated JSON with ids counted up, replies and events read from its fd 4 by a thread
//! (so that every wait has a deadline), and the helpers that take a reply apart. Kept apart from
//! the process ([`super::chromium`]) and from what the page's events mean ([`super::events`]):
//! this is only the framing and the waiting.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Write as _};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Instant;

use base64::Engine as _;
use serde_json::{json, Value};

use super::chromium::Chromium;
use crate::PATIENCE;

impl Chromium {
    /// Sends a command, returning its id without waiting for the reply.
    pub(super) fn send(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: &Value,
    ) -> Result<u64, String> {
        self.next_id += 1;
        let mut message = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        if let Err(e) = self.commands.write_all(&bytes) {
            return Err(self.failure(&format!("sending {method} to chromium: {e}")));
        }
        Ok(self.next_id)
    }

    /// Sends a browser-level command and waits for its reply (events meanwhile are dropped:
    /// there is no page yet).
    pub(super) fn call_browser(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.send(None, method, &params)?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.recv(deadline)? {
                Some(message) if message.get("id").and_then(Value::as_u64) == Some(id) => {
                    return reply_result(message, method)
                }
                Some(_) => {}
                None => {
                    return Err(self.failure(&format!(
                        "timed out after {PATIENCE:?} waiting for the reply to {method}"
                    )))
                }
            }
        }
    }

    /// The next message, `None` once `deadline` has passed, an error if the pipe is closed.
    pub(super) fn recv(&mut self, deadline: Instant) -> Result<Option<Value>, String> {
        if let Some(why) = &self.closed {
            let why = why.clone();
            return Err(self.failure(&why));
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.messages.recv_timeout(timeout) {
            Ok(Ok(message)) => Ok(Some(message)),
            Ok(Err(why)) => {
                self.closed = Some(why.clone());
                Err(self.failure(&why))
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                let why = "the DevTools pipe reader stopped".to_owned();
                self.closed = Some(why.clone());
                Err(self.failure(&why))
            }
        }
    }
}

/// Reads NUL-terminated JSON messages into `sender` until the pipe closes.
pub(super) fn read_messages(pipe: File, sender: &mpsc::Sender<Result<Value, String>>) {
    let mut reader = BufReader::new(pipe);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        let message = match reader.read_until(0, &mut buffer) {
            Ok(0) => Err("chromium closed the DevTools pipe".to_owned()),
            Ok(_) if buffer.last() != Some(&0) => {
                Err("chromium closed the DevTools pipe in the middle of a message".to_owned())
            }
            Ok(n) => serde_json::from_slice(&buffer[..n - 1]).map_err(|e| {
                let start = String::from_utf8_lossy(&buffer[..n.min(200)]).into_owned();
                format!("chromium sent a message that is not JSON ({e}): {start}")
            }),
            Err(e) => Err(format!("reading the DevTools pipe: {e}")),
        };
        let last = message.is_err();
        if sender.send(message).is_err() || last {
            return;
        }
    }
}

/// The `result` of a reply, or its `error`.
pub(super) fn reply_result(mut reply: Value, method: &str) -> Result<Value, String> {
    if let Some(error) = reply.get("error") {
        return Err(format!("chromium refused {method}: {error}"));
    }
    Ok(reply["result"].take())
}

/// The string at `key` of a command's result.
pub(super) fn str_in<'a>(result: &'a Value, key: &str, method: &str) -> Result<&'a str, String> {
    result[key]
        .as_str()
        .ok_or_else(|| format!("the reply to {method} has no {key:?}: {result}"))
}

/// The PNG in the `data` of a `Page.captureScreenshot` reply: standard base64, padded.
pub(super) fn decode_screenshot(data: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| "Page.captureScreenshot returned invalid base64".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3 × 1 PNG of #cc0033, #0000ff and #ffffff, as `Page.captureScreenshot` would send it
    /// (73 bytes, so its base64 ends in padding).
    const PNG_3X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAMAAAABCAIAAACUgoPjAAAAEElEQVR42mM4w2DMwPAfCAASkQT8VTHGRAAAAABJRU5ErkJggg==";

    #[test]
    fn a_screenshot_decodes_to_its_png() {
        let bytes = decode_screenshot(PNG_3X1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bytes.len(), 73);
        let mut reader = png::Decoder::new(bytes.as_slice())
            .read_info()
            .unwrap_or_else(|e| panic!("not a PNG: {e}"));
        let mut pixels = vec![0; reader.output_buffer_size()];
        let frame = reader
            .next_frame(&mut pixels)
            .unwrap_or_else(|e| panic!("decoding the PNG: {e}"));
        assert_eq!((frame.width, frame.height), (3, 1));
        assert_eq!(
            pixels[..frame.buffer_size()],
            [0xcc, 0x00, 0x33, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff]
        );
    }

    /// What the hand-written decoder this replaced accepted and refused: the standard alphabet,
    /// padding required, and only at the end.
    #[test]
    fn screenshots_are_standard_padded_base64() {
        let decode = |text| decode_screenshot(text).ok();
        assert_eq!(decode(""), Some(vec![]));
        assert_eq!(decode("TWFu"), Some(b"Man".to_vec()));
        assert_eq!(decode("TWE="), Some(b"Ma".to_vec()));
        assert_eq!(decode("TQ=="), Some(b"M".to_vec()));
        assert_eq!(decode("+/+/"), Some(vec![0xfb, 0xff, 0xbf]));
        assert_eq!(decode("TQ==TWFu"), None);
        assert_eq!(decode("TWF"), None);
        assert_eq!(decode("TW-u"), None);
        assert_eq!(
            decode_screenshot("TWF"),
            Err("Page.captureScreenshot returned invalid base64".to_owned())
        );
    }
}
