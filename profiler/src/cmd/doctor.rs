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
    Ok(())
}
