//! `--on-warning CMD`: a command run when a container's warning level changes, with the details
//! in environment variables, for paging someone or taking a heap dump before the kill.
use std::{os::fd::AsFd, process::Stdio};

use crate::record::{Record, RecordBody};

/// The environment the command gets for a `warning` record.
pub(super) fn environment(record: &Record) -> Vec<(&'static str, String)> {
    let RecordBody::Warning(w) = &record.body else {
        return Vec::new();
    };
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
    let text = |v: Option<&String>| v.cloned().unwrap_or_default();
    let identity = record.identity.clone().unwrap_or_default();
    vec![
        ("PROFILER_LEVEL", format!("{:?}", w.level).to_lowercase()),
        (
            "PROFILER_PREVIOUS_LEVEL",
            format!("{:?}", w.previous).to_lowercase(),
        ),
        ("PROFILER_ETA_SECONDS", opt(w.eta_seconds)),
        ("PROFILER_ETA_LOW_SECONDS", opt(w.eta_low_seconds)),
        ("PROFILER_ETA_HIGH_SECONDS", opt(w.eta_high_seconds)),
        ("PROFILER_REASON", w.reason.clone()),
        (
            "PROFILER_UNRECLAIMABLE_BYTES",
            w.unreclaimable_bytes.to_string(),
        ),
        ("PROFILER_USAGE_BYTES", w.usage_bytes.to_string()),
        (
            "PROFILER_LIMIT_BYTES",
            w.limit_bytes.map(|l| l.to_string()).unwrap_or_default(),
        ),
        (
            "PROFILER_CGROUP",
            record
                .cgroup
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("PROFILER_NAMESPACE", text(identity.namespace.as_ref())),
        ("PROFILER_POD", text(identity.pod.as_ref())),
        ("PROFILER_CONTAINER", text(identity.container.as_ref())),
        (
            "PROFILER_CONTAINER_ID",
            text(identity.container_id.as_ref()),
        ),
    ]
}

/// Starts `sh -c CMD` with the warning's details and does not wait for it: a slow command must
/// not hold up the watch. Its output goes to stderr, never into the JSON on stdout; its exit
/// is collected in the background and a failure logged.
pub(super) fn run(command: &str, record: &Record) {
    let stdout = match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::null(),
    };
    let spawned = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(environment(record))
        .stdin(Stdio::null())
        .stdout(stdout)
        .spawn();
    match spawned {
        Ok(mut child) => {
            let command = command.to_owned();
            tokio::spawn(async move {
                match child.wait().await {
                    Ok(status) if !status.success() => {
                        log::warn!("--on-warning command `{command}` ended with {status}")
                    }
                    Err(e) => log::warn!("--on-warning command `{command}`: {e}"),
                    Ok(_) => {}
                }
            });
        }
        Err(e) => log::warn!("--on-warning command `{command}` could not start: {e}"),
    }
}
