//! The agent's HTTP server: `/metrics`, `/report`, `/healthz`, on hyper.
//!
//! What clients can do is bounded: at most [`MAX_CONNECTIONS`] at once (more are closed at
//! accept), headers within [`HEADER_TIMEOUT`], a connection at most [`CONNECTION_LIFETIME`]
//! long; metrics render one at a time and reports one at a time, both off the event loop,
//! so no client slows the sampling.
use std::{
    convert::Infallible,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming,
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};

use super::{
    exposition::{self, Format},
    metrics::AgentMetrics,
    readback::{self, Ask, Filter, ReadBackError},
};

/// Connections served at once; more are closed as they come.
pub(crate) const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send its request's headers.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may stay open, whatever it does.
pub(crate) const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// The most recording one report reads: it holds the samples in memory (about a quarter of
/// the recording's size), so this bounds what a report adds to the agent's memory.
pub(crate) const REPORT_BYTES: u64 = 128 << 20;
/// The most cgroups one report draws: two charts each, made in memory.
pub(crate) const REPORT_CGROUPS: usize = 100;

/// What the handlers share.
#[derive(Debug)]
pub(crate) struct State {
    /// The agent's metrics.
    pub metrics: Arc<AgentMetrics>,
    /// The rolling recording's directory.
    pub record_dir: PathBuf,
    /// `--retain`, seconds: the most `since` can ask for.
    pub retain_s: f64,
    /// Rounds older than this mean the collector is stuck: `/healthz` fails.
    pub stale_after: Duration,
    /// One `/metrics` render at a time.
    pub render: Semaphore,
    /// One report at a time.
    pub report: Semaphore,
}

/// Serves `listener` until the future is dropped.
pub(crate) async fn serve(listener: TcpListener, state: Arc<State>) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin.
                log::warn!("accepting an HTTP connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            log::debug!("{peer}: closed at once, {MAX_CONNECTIONS} connections are open");
            drop(stream);
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request| handle(Arc::clone(&state), request));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("{peer}: {e}"),
                Err(_) => log::debug!("{peer}: closed after {CONNECTION_LIFETIME:?}"),
            }
        });
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET (and HEAD) are served\n",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    let response = match request.uri().path() {
        "/metrics" => metrics(&state, &request).await,
        "/report" => report(&state, request.uri().query()).await,
        "/healthz" => health(&state),
        "/" => text(
            StatusCode::OK,
            "profiler serve: GET /metrics, /report?since=1h, /healthz\n",
        ),
        path => text(
            StatusCode::NOT_FOUND,
            format!("no such path {path:?}: try /metrics, /report?since=1h or /healthz\n"),
        ),
    };
    Ok(response)
}

async fn metrics(state: &Arc<State>, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    // Waiting for the render is waiting in line; the semaphore is never closed.
    let Ok(_turn) = state.render.acquire().await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    };
    let metrics = Arc::clone(&state.metrics);
    let rendered = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let body = exposition::render(metrics.registry(), format);
        metrics.scrape_seconds.set(started.elapsed().as_secs_f64());
        body
    })
    .await;
    match rendered {
        Ok(Ok(body)) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            response
        }
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering the metrics failed: {e}\n"),
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering the metrics failed: {e}\n"),
        ),
    }
}

/// `/report`'s query: `since` (a duration from a second to the retention; the whole
/// retention when not given) and which containers (`namespace`, `pod`, `container`).
pub(crate) fn report_query(query: Option<&str>, retain_s: f64) -> Result<(f64, Filter), String> {
    let mut since = None;
    let mut filter = Filter::default();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)
            .ok_or_else(|| format!("{key}: {value:?} is not a valid URL-encoded value"))?;
        let field = match key {
            "since" => {
                since = Some(value);
                continue;
            }
            "namespace" => &mut filter.namespace,
            "pod" => &mut filter.pod,
            "container" => &mut filter.container,
            other => {
                return Err(format!(
                    "unknown parameter {other:?}: /report takes since=DURATION (e.g. since=1h), \
                     namespace=, pod= and container="
                ))
            }
        };
        if value.is_empty() {
            return Err(format!("{key} is empty: name one, or leave it out"));
        }
        *field = Some(value);
    }
    let since_s = match since {
        Some(value) => since_seconds(&value, retain_s)?,
        None => retain_s,
    };
    Ok((since_s, filter))
}

/// `%XX` escapes and `+` as a space, as browsers write query values; `None` when malformed.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.bytes();
    while let Some(b) = rest.next() {
        match b {
            b'%' => {
                let hex = [rest.next()?, rest.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
            }
            b'+' => bytes.push(b' '),
            b => bytes.push(b),
        }
    }
    String::from_utf8(bytes).ok()
}

/// A `since` value, checked: a duration from a second to the retention.
fn since_seconds(value: &str, retain_s: f64) -> Result<f64, String> {
    let seconds = crate::cli::parse_duration(value)
        .map_err(|e| format!("since: {e}"))?
        .as_secs_f64();
    if !(1.0..=retain_s).contains(&seconds) {
        return Err(format!(
            "since={value} is out of range: the recording goes back {} (--retain); ask for 1s \
             to that",
            duration_words(retain_s)
        ));
    }
    Ok(seconds)
}

async fn report(state: &Arc<State>, query: Option<&str>) -> Response<Full<Bytes>> {
    let (since_s, filter) = match report_query(query, state.retain_s) {
        Ok(asked) => asked,
        Err(message) => return text(StatusCode::BAD_REQUEST, message + "\n"),
    };
    let Ok(_turn) = state.report.try_acquire() else {
        let mut response = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "a report is being made; try again in a few seconds\n",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    let dir = state.record_dir.clone();
    let made = tokio::task::spawn_blocking(move || {
        let now = crate::collector::unix_now();
        let ask = Ask {
            since_s,
            filter,
            max_bytes: REPORT_BYTES,
            max_cgroups: REPORT_CGROUPS,
        };
        let reader = readback::read_back(&dir, now, &ask)?;
        let name = dir.join(format!("last {}", duration_words(since_s)));
        Ok::<_, ReportFailure>(reports::page_from(std::io::BufReader::new(reader), &name)?)
    })
    .await;
    match made {
        Ok(Ok(page)) => {
            let mut response = Response::new(Full::new(Bytes::from(page.html)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        Ok(Err(ReportFailure::ReadBack(e @ ReadBackError::Empty { .. }))) => {
            text(StatusCode::NOT_FOUND, format!("{e}\n"))
        }
        Ok(Err(ReportFailure::ReadBack(
            e @ (ReadBackError::TooBig { .. } | ReadBackError::TooMany { .. }),
        ))) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}\n", crate::errors::chain(&e)),
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("making the report failed: {e}\n"),
        ),
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
enum ReportFailure {
    #[error(transparent)]
    ReadBack(#[from] ReadBackError),
    #[error(transparent)]
    Report(#[from] reports::ReportError),
}

/// `86400` → `1d`, `5400` → `90m`, `45` → `45s`.
fn duration_words(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        s if s >= 86400 && s.is_multiple_of(86400) => format!("{}d", s / 86400),
        s if s >= 3600 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s >= 60 && s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Healthy once a sampling round has ended (the metrics hold the node's figures), and while
/// rounds keep ending.
fn health(state: &State) -> Response<Full<Bytes>> {
    match state.metrics.since_last_round() {
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: no sampling round has ended yet\n",
        ),
        Some(age) if age > state.stale_after => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the last sampling round was {age:?} ago\n"),
        ),
        Some(_) => text(StatusCode::OK, "ok\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_duration_within_the_retention() {
        let day = 86400.0;
        let since = |q| report_query(q, day).map(|(s, _)| s);
        assert_eq!(since(None), Ok(day));
        assert_eq!(since(Some("")), Ok(day));
        assert_eq!(since(Some("since=1h")), Ok(3600.0));
        assert_eq!(since(Some("since=90s")), Ok(90.0));
        assert!(since(Some("since=2d"))
            .expect_err("past the retention")
            .contains("out of range"));
        assert!(since(Some("since=0s")).is_err());
        assert!(since(Some("since=500ms")).is_err());
        assert!(since(Some("since=soon")).is_err());
        assert!(since(Some("since=1h&node=x"))
            .expect_err("unknown parameter")
            .contains("unknown parameter"));
    }

    #[test]
    fn containers_are_named_by_url_encoded_values() {
        let (since, filter) = report_query(
            Some("pod=web-1&namespace=shop%2Fa&since=10m&container=a+b"),
            3600.0,
        )
        .expect("valid");
        assert_eq!(since, 600.0);
        assert_eq!(
            filter,
            Filter {
                namespace: Some("shop/a".into()),
                pod: Some("web-1".into()),
                container: Some("a b".into()),
            }
        );
        assert!(report_query(Some("pod="), 3600.0).is_err());
        assert!(report_query(Some("pod=%zz"), 3600.0).is_err());
        assert!(
            report_query(Some("pod=%e2%28"), 3600.0).is_err(),
            "not UTF-8"
        );
    }
}
