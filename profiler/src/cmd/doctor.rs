//! `profiler doctor`: what this kernel offers and the mode the profiler picks, with reasons.
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::{
    btf::VMLINUX_BTF,
    cgroup,
    cli::DoctorArgs,
    errors,
    mode::ModeRequest,
    pods::{self, Inventory, NodeRoots},
    privilege,
    probe::{self, ProbeReport},
};

#[derive(Serialize)]
struct Doctor {
    /// The probe report has `kernel` and `mode` too: these two are only written without one,
    /// so the JSON never holds a key twice.
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel: Option<String>,
    btf_present: bool,
    own_memory_cgroup: Option<String>,
    cgroup_version: Option<String>,
    missing_capabilities: Vec<&'static str>,
    #[serde(flatten)]
    probe: Option<ProbeReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    probe_error: Option<String>,
    /// Where `watch --pod/--container/--all` looks for containers, and what it finds there.
    cgroup_root: String,
    containers_found: usize,
    pods_named: usize,
    pod_logs: String,
    /// A running agent's charge path, when one answers at `--agent`.
    agent: Option<AgentState>,
}

/// What a running `profiler serve` says of its charge path.
#[derive(Debug, PartialEq, Serialize)]
struct AgentState {
    address: String,
    charge_tracing_armed: bool,
    reason: Option<String>,
}

/// Reads the charge path's state from an agent's `/metrics` text.
fn agent_state(address: &str, metrics: &str) -> Option<AgentState> {
    let armed = metrics.lines().find_map(|l| {
        l.strip_prefix("profiler_charge_tracing_armed ")
            .map(|v| v.trim() == "1")
    })?;
    let reason = metrics.lines().find_map(|l| {
        let rest = l.strip_prefix("profiler_charge_tracing_reason{reason=\"")?;
        let (reason, value) = rest.split_once("\"} ")?;
        (value.trim() == "1").then(|| reason.to_owned())
    });
    Some(AgentState {
        address: address.to_owned(),
        charge_tracing_armed: armed,
        reason,
    })
}

/// Asks the agent at `address` for its metrics (briefly: none may run there).
fn ask_agent(address: std::net::SocketAddr) -> Option<AgentState> {
    use std::io::{Read as _, Write as _};
    let timeout = std::time::Duration::from_millis(500);
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    agent_state(&address.to_string(), &body)
}

/// Runs `profiler doctor`.
pub fn run(args: DoctorArgs) -> Result<()> {
    let own = cgroup::own_memory_cgroup().ok();
    // From the file system's type: the root cgroup (where a VM's init runs) has no
    // `memory.current`, so opening it as a memory cgroup would say nothing.
    let version = own
        .as_deref()
        .and_then(cgroup::hierarchy_version)
        .map(|v| format!("{v:?}").to_lowercase());
    let missing = privilege::effective_capabilities()
        .map(privilege::missing_for_tracing)
        .unwrap_or_default();
    let (probe, probe_error) = if missing.is_empty() {
        match probe::start(
            ModeRequest::Auto,
            Path::new(VMLINUX_BTF),
            profiler_common::MAX_SLOTS,
        ) {
            // Dropping the probes right away detaches everything that was attached to check.
            Ok((_probes, report)) => (Some(report), None),
            Err(e) => (None, Some(errors::chain(&e))),
        }
    } else {
        (
            None,
            Some(format!(
                "not probed: missing {} (run with sudo)",
                missing.join(", ")
            )),
        )
    };
    let roots = NodeRoots {
        cgroup_root: pods::default_cgroup_root(),
        pod_logs: "/var/log/pods".into(),
        container_logs: "/var/log/containers".into(),
        runtime_state: "/".into(),
    };
    let inventory = Inventory::scan(&roots);
    let doctor = Doctor {
        cgroup_root: roots.cgroup_root.display().to_string(),
        containers_found: inventory.containers.len(),
        pods_named: inventory.pod_names().len(),
        pod_logs: roots.pod_logs.display().to_string(),
        kernel: probe.is_none().then(probe::kernel_release),
        btf_present: Path::new(VMLINUX_BTF).exists(),
        own_memory_cgroup: own.map(|p| p.display().to_string()),
        cgroup_version: version,
        missing_capabilities: missing,
        mode: probe.is_none().then(|| "unknown".to_string()),
        probe,
        probe_error,
        agent: ask_agent(args.agent),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doctor)?);
        return Ok(());
    }
    println!("kernel:          {}", probe::kernel_release());
    println!(
        "BTF:             {}",
        if doctor.btf_present {
            VMLINUX_BTF.to_string()
        } else {
            format!("missing ({VMLINUX_BTF})")
        }
    );
    println!(
        "memory cgroup:   {} ({})",
        doctor.own_memory_cgroup.as_deref().unwrap_or("not found"),
        doctor
            .cgroup_version
            .as_deref()
            .unwrap_or("unknown version")
    );
    println!(
        "containers:      {} under {} ({} pods named in {})",
        doctor.containers_found, doctor.cgroup_root, doctor.pods_named, doctor.pod_logs
    );
    if !doctor.missing_capabilities.is_empty() {
        println!(
            "capabilities:    missing {}",
            doctor.missing_capabilities.join(", ")
        );
    }
    if let Some(error) = &doctor.probe_error {
        println!("probe:           {error}");
    }
    if let Some(report) = &doctor.probe {
        println!("hooks:");
        for hook in &report.decision.hooks {
            let status = hook.status.as_str();
            let name = format!("{} {}", hook.kind, hook.hook);
            match &hook.detail {
                Some(d) => println!("  {name:<48} {status}: {d}"),
                None => println!("  {name:<48} {status}"),
            }
        }
        println!(
            "mode:            {} ({})",
            report.decision.mode, report.decision.mode_reason
        );
        println!("OOM kills from:  {}", report.decision.oom_reason);
    } else {
        println!("mode:            unknown");
    }
    println!(
        "charge path:     `watch` attaches it for the whole watch; `serve` and `watch \
         --adaptive` only while a container needs it (unreclaimable >= 75 % of its limit, an \
         OOM kill forecast within 3 x --warn, growth >= 5 % of the limit in one interval, \
         memory pressure >= 10 %, or the node's eviction forecast within 3 x --warn), until \
         none has for 60 s"
    );
    match &doctor.agent {
        Some(agent) => println!(
            "agent:           {} answers: charge path {}{}",
            agent.address,
            if agent.charge_tracing_armed {
                "attached"
            } else {
                "detached"
            },
            agent
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        None => println!("agent:           none answers at {}", args.agent),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_charge_path_from_an_agents_metrics() {
        let metrics = "# TYPE profiler_charge_tracing_armed gauge\n\
                       profiler_charge_tracing_armed 1\n\
                       profiler_charge_tracing_reason{reason=\"near_limit\"} 1\n";
        assert_eq!(
            agent_state("a:1", metrics),
            Some(AgentState {
                address: "a:1".into(),
                charge_tracing_armed: true,
                reason: Some("near_limit".into()),
            })
        );
        assert_eq!(agent_state("a:1", "HTTP/1.0 404 Not Found\r\n\r\nno"), None);
    }
}
