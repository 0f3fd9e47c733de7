//! What the page's events put in its [`PageReport`](super::PageReport), and the answers some of
//! them need: console messages, exceptions, dialogs (accepted, so the page goes on) and requests
//! (local ones continued, the rest failed, which keeps the page hermetic). Kept apart from the
//! waiting loop in the parent module, which hands every message that is not the reply it waits
//! for to [`Page::handle`].

use serde_json::{json, Value};

use super::{ConsoleMessage, Page};

impl Page {
    /// Records an event of the page's session and answers those that need an answer.
    pub(super) fn handle(&mut self, message: Value) -> Result<(), String> {
        if message.get("id").is_some() {
            // The reply to a command nobody waits for (dialogs, paused requests).
            if let Some(error) = message.get("error") {
                eprintln!("warning: chromium: a command of the harness failed: {error}");
            }
            return Ok(());
        }
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            return Ok(());
        };
        let params = &message["params"];
        if method == "Target.detachedFromTarget" && params["sessionId"] == *self.session {
            self.gone = Some("the page was detached (closed or crashed)".to_owned());
        }
        if message.get("sessionId").and_then(Value::as_str) != Some(&self.session) {
            return Ok(());
        }
        match method {
            "Runtime.consoleAPICalled" => {
                let args = params["args"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                let text = args.iter().map(remote_object_text).collect::<Vec<_>>();
                self.report.console.push(ConsoleMessage {
                    level: params["type"].as_str().unwrap_or("?").to_owned(),
                    source: "console".to_owned(),
                    text: text.join(" "),
                });
            }
            "Log.entryAdded" => {
                let entry = &params["entry"];
                let mut text = entry["text"].as_str().unwrap_or_default().to_owned();
                if let Some(url) = entry["url"].as_str().filter(|u| !u.is_empty()) {
                    text = format!("{text} ({url})");
                }
                self.report.console.push(ConsoleMessage {
                    level: entry["level"].as_str().unwrap_or("?").to_owned(),
                    source: entry["source"].as_str().unwrap_or("?").to_owned(),
                    text,
                });
            }
            "Runtime.exceptionThrown" => {
                let text = exception_text(&params["exceptionDetails"]);
                self.report.exceptions.push(text);
            }
            "Page.javascriptDialogOpening" => {
                self.report.dialogs.push(format!(
                    "{}: {}",
                    params["type"].as_str().unwrap_or("?"),
                    params["message"].as_str().unwrap_or_default()
                ));
                self.chromium.send(
                    Some(&self.session),
                    "Page.handleJavaScriptDialog",
                    &json!({"accept": true}),
                )?;
            }
            "Network.requestWillBeSent" => {
                let url = params["request"]["url"].as_str().unwrap_or_default();
                let is_document = params["type"] == "Document" && url == self.document_url;
                if !is_document && !url.starts_with("data:") {
                    self.report.requests.push(url.to_owned());
                }
            }
            "Fetch.requestPaused" => {
                let url = params["request"]["url"].as_str().unwrap_or_default();
                let local = ["file:", "data:", "blob:"]
                    .iter()
                    .any(|s| url.starts_with(s));
                let request_id = params["requestId"].clone();
                if local {
                    let params = json!({"requestId": request_id});
                    self.chromium
                        .send(Some(&self.session), "Fetch.continueRequest", &params)?;
                } else {
                    let params = json!({"requestId": request_id, "errorReason": "BlockedByClient"});
                    self.chromium
                        .send(Some(&self.session), "Fetch.failRequest", &params)?;
                }
            }
            "Page.loadEventFired" => self.loads += 1,
            "Inspector.targetCrashed" => {
                self.gone = Some("the page's renderer crashed".to_owned());
            }
            _ => {}
        }
        Ok(())
    }
}

/// A console argument as text: strings as they are, other primitives as JSON, objects by
/// their description.
fn remote_object_text(object: &Value) -> String {
    match object.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(value) => value.to_string(),
        None => object["unserializableValue"]
            .as_str()
            .or(object["description"].as_str())
            .or(object["type"].as_str())
            .unwrap_or("?")
            .to_owned(),
    }
}

/// An exception as `Uncaught Error: message\n    at url:line:column` (its description, with
/// the stack), or `Uncaught "value" (at url:line:column)` for a value thrown that is no error.
pub(super) fn exception_text(details: &Value) -> String {
    let text = details["text"].as_str().unwrap_or("exception");
    let mut out = match details["exception"]["description"].as_str() {
        Some(description) => format!("{text} {description}"),
        None => match &details["exception"]["value"] {
            Value::Null => text.to_owned(),
            value => format!("{text} {value}"),
        },
    };
    // A stack says where already.
    if let Some(url) = details["url"]
        .as_str()
        .filter(|u| !u.is_empty() && !out.contains(u))
    {
        let line = details["lineNumber"].as_u64().unwrap_or(0) + 1;
        let column = details["columnNumber"].as_u64().unwrap_or(0) + 1;
        out = format!("{out} (at {url}:{line}:{column})");
    }
    out
}
