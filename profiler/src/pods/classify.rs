//! What a cgroup directory is, from its path alone: the kubelet's layouts (systemd and cgroupfs
//! drivers, both cgroup versions) and those of container runtimes used without Kubernetes.
//!
//! Pure string work on path components, so it is tested on paths only and never touches a
//! file system.
use std::path::Path;

use serde::Serialize;

/// A pod's quality-of-service class, which decides where the kubelet puts its cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Qos {
    /// Requests equal limits: the pod's cgroup sits directly under `kubepods`.
    Guaranteed,
    /// `kubepods/burstable` (`kubepods-burstable.slice`).
    Burstable,
    /// `kubepods/besteffort` (`kubepods-besteffort.slice`).
    #[serde(rename = "besteffort")]
    BestEffort,
}

impl Qos {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "burstable" => Some(Qos::Burstable),
            "besteffort" => Some(Qos::BestEffort),
            _ => None,
        }
    }
}

/// The container runtime that made a container's cgroup, from its name prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Runtime {
    /// containerd (`cri-containerd-<id>.scope`, nerdctl's `nerdctl-<id>.scope`).
    Containerd,
    /// CRI-O (`crio-<id>.scope`).
    Crio,
    /// Docker or cri-dockerd (`docker-<id>.scope`, `docker/<id>`).
    Docker,
    /// Podman (`libpod-<id>.scope`, `libpod_parent/libpod-<id>`).
    Podman,
}

/// Name prefixes of container cgroups, and the runtime each one means. The conmon monitor
/// cgroups (`crio-conmon-<id>`, `libpod-conmon-<id>`) are not containers: the id check below
/// rejects them, since `conmon-<id>` is not hex.
const RUNTIME_PREFIXES: [(&str, Runtime); 5] = [
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::Crio),
    ("docker-", Runtime::Docker),
    ("libpod-", Runtime::Podman),
    ("nerdctl-", Runtime::Containerd),
];

/// A pod's place in the kubelet's layout.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PodPlace {
    /// Its QoS class.
    pub qos: Qos,
    /// The pod's uid, with dashes (the systemd driver writes it with underscores).
    pub uid: String,
}

/// What a cgroup directory is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CgroupRole {
    /// The kubelet's top cgroup (`kubepods`, `kubepods.slice`): its limit is the node's
    /// allocatable memory.
    Kubepods,
    /// The Burstable or BestEffort parent of pods.
    QosParent(Qos),
    /// A pod.
    Pod(PodPlace),
    /// A container: of a pod, or run without Kubernetes.
    Container {
        /// The pod it belongs to (`None` outside Kubernetes).
        pod: Option<PodPlace>,
        /// The runtime, where the name says it.
        runtime: Option<Runtime>,
        /// The container id (lowercase hex).
        id: String,
    },
}

/// Whether `text` is a container id: 64 lowercase hex characters, as containerd, CRI-O, docker
/// and podman make them. (Short ids are for people; cgroups and log links carry full ones,
/// and shorter hex names, such as 32-character session ids, are not containers.)
pub(crate) fn is_container_id(text: &str) -> bool {
    text.len() == 64 && is_lower_hex(text)
}

/// Whether `text` is only lowercase hex digits (ids and id prefixes).
pub(crate) fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The id in a runtime-named container cgroup (`<prefix><id>[.scope]`), or a bare id.
fn container_name(name: &str) -> Option<(Option<Runtime>, String)> {
    let stem = name.strip_suffix(".scope").unwrap_or(name);
    for (prefix, runtime) in RUNTIME_PREFIXES {
        if let Some(id) = stem.strip_prefix(prefix) {
            return is_container_id(id).then(|| (Some(runtime), id.to_owned()));
        }
    }
    // Bare ids are what the cgroupfs driver and docker's own cgroupfs layout use; a scope must
    // carry a runtime prefix.
    (stem == name && is_container_id(name)).then(|| (None, name.to_owned()))
}

/// The uid in a pod cgroup name: `pod<uid>` (cgroupfs) or `<base>[-<qos>]-pod<uid>.slice`
/// (systemd, uid with underscores).
fn pod_uid(name: &str, base: &str, systemd: bool) -> Option<(Option<Qos>, String)> {
    let uid_ok = |uid: &str| {
        !uid.is_empty()
            && uid.len() <= 64
            && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !systemd {
        let uid = name.strip_prefix("pod")?;
        return uid_ok(uid).then(|| (None, uid.to_owned()));
    }
    let rest = name.strip_prefix(base)?.strip_prefix('-')?;
    let rest = rest.strip_suffix(".slice")?;
    let (qos, uid) = match rest.split_once("-pod") {
        Some((qos, uid)) => (Some(Qos::from_name(qos)?), uid),
        None => (None, rest.strip_prefix("pod")?),
    };
    let uid = uid.replace('_', "-");
    uid_ok(&uid).then_some((qos, uid))
}

/// Classifies a cgroup directory by its path (absolute, or relative to a hierarchy root).
///
/// The kubelet's top cgroup is found anywhere in the path, so a node whose kubelet runs in a
/// slice of its own (`kubelet.slice/kubelet-kubepods.slice`, as kind nodes do), or a test tree
/// below some other cgroup, is understood as well.
pub(crate) fn classify(path: &Path) -> Option<CgroupRole> {
    let parts: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    let top = parts
        .iter()
        .position(|p| *p == "kubepods" || *p == "kubepods.slice" || p.ends_with("-kubepods.slice"));
    match top {
        Some(top) => classify_kubelet(&parts[top..]),
        None => classify_runtime(&parts),
    }
}

/// `parts` starts at the kubelet's top cgroup.
fn classify_kubelet(parts: &[&str]) -> Option<CgroupRole> {
    let systemd = parts[0].ends_with(".slice");
    let base = parts[0].strip_suffix(".slice").unwrap_or(parts[0]);
    let rest = &parts[1..];
    let Some((first, rest)) = rest.split_first() else {
        return Some(CgroupRole::Kubepods);
    };
    // The QoS parent, if any, then the pod.
    let qos_parent = if systemd {
        first
            .strip_prefix(base)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_suffix(".slice"))
            .and_then(Qos::from_name)
    } else {
        Qos::from_name(first)
    };
    let (qos, pod_name, rest) = match qos_parent {
        Some(qos) => {
            let Some((pod_name, rest)) = rest.split_first() else {
                return Some(CgroupRole::QosParent(qos));
            };
            (qos, *pod_name, rest)
        }
        None => (Qos::Guaranteed, *first, rest),
    };
    let (named_qos, uid) = pod_uid(pod_name, base, systemd)?;
    // systemd repeats the QoS class in the pod's slice name; it must agree with the parent.
    match (named_qos, qos) {
        (None, Qos::Guaranteed) => {}
        (Some(named), parent) if named == parent && parent != Qos::Guaranteed => {}
        (None, _) if !systemd => {}
        _ => return None,
    }
    let pod = PodPlace { qos, uid };
    match rest {
        [] => Some(CgroupRole::Pod(pod)),
        [container] => {
            let (runtime, id) = container_name(container)?;
            Some(CgroupRole::Container {
                pod: Some(pod),
                runtime,
                id,
            })
        }
        // Below a container (e.g. crun's `container` subgroup): part of that container.
        _ => None,
    }
}

/// Containers outside Kubernetes: `machine.slice/libpod-<id>.scope` (podman),
/// `system.slice/docker-<id>.scope`, `docker/<id>`, `libpod_parent/libpod-<id>`, and so on.
fn classify_runtime(parts: &[&str]) -> Option<CgroupRole> {
    let (last, before) = parts.split_last()?;
    let (runtime, id) = container_name(last)?;
    let runtime = runtime.or_else(|| (before.last() == Some(&"docker")).then_some(Runtime::Docker));
    Some(CgroupRole::Container {
        pod: None,
        runtime,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4b1d7e0c9a6f3e2d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d";
    const UID: &str = "0d3b3a5e-6f1c-4b7e-9a4d-2c8e1f0b7a6d";
    const UID_: &str = "0d3b3a5e_6f1c_4b7e_9a4d_2c8e1f0b7a6d";

    fn container(qos: Qos, runtime: Option<Runtime>) -> Option<CgroupRole> {
        Some(CgroupRole::Container {
            pod: Some(PodPlace {
                qos,
                uid: UID.into(),
            }),
            runtime,
            id: ID.into(),
        })
    }

    fn at(path: &str) -> Option<CgroupRole> {
        classify(Path::new(path))
    }

    #[test]
    fn systemd_driver_all_qos_and_runtimes() {
        let cases = [
            ("cri-containerd", Runtime::Containerd),
            ("crio", Runtime::Crio),
            ("docker", Runtime::Docker),
        ];
        for (prefix, runtime) in cases {
            let scope = format!("{prefix}-{ID}.scope");
            assert_eq!(
                at(&format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/{scope}"
                )),
                container(Qos::Burstable, Some(runtime))
            );
            assert_eq!(
                at(&format!(
                    "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/{scope}"
                )),
                container(Qos::BestEffort, Some(runtime))
            );
            assert_eq!(
                at(&format!("kubepods.slice/kubepods-pod{UID_}.slice/{scope}")),
                container(Qos::Guaranteed, Some(runtime))
            );
        }
    }

    #[test]
    fn cgroupfs_driver_all_qos() {
        let root = "/sys/fs/cgroup/memory";
        assert_eq!(
            at(&format!("{root}/kubepods/burstable/pod{UID}/{ID}")),
            container(Qos::Burstable, None)
        );
        assert_eq!(
            at(&format!("{root}/kubepods/besteffort/pod{UID}/{ID}")),
            container(Qos::BestEffort, None)
        );
        assert_eq!(
            at(&format!("{root}/kubepods/pod{UID}/{ID}")),
            container(Qos::Guaranteed, None)
        );
        assert_eq!(
            at(&format!("{root}/kubepods/pod{UID}/crio-{ID}")),
            container(Qos::Guaranteed, Some(Runtime::Crio))
        );
    }

    #[test]
    fn kubelet_parents() {
        assert_eq!(
            at("/sys/fs/cgroup/kubepods.slice"),
            Some(CgroupRole::Kubepods)
        );
        assert_eq!(at("/kubepods"), Some(CgroupRole::Kubepods));
        assert_eq!(
            at("kubepods.slice/kubepods-burstable.slice"),
            Some(CgroupRole::QosParent(Qos::Burstable))
        );
        assert_eq!(
            at("kubepods/besteffort"),
            Some(CgroupRole::QosParent(Qos::BestEffort))
        );
        let pod = |qos| {
            Some(CgroupRole::Pod(PodPlace {
                qos,
                uid: UID.into(),
            }))
        };
        assert_eq!(
            at(&format!(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"
            )),
            pod(Qos::BestEffort)
        );
        assert_eq!(at(&format!("kubepods/pod{UID}")), pod(Qos::Guaranteed));
        assert_eq!(
            at(&format!("/a/b/kubepods/burstable/pod{UID}")),
            pod(Qos::Burstable)
        );
    }

    #[test]
    fn kubelet_in_its_own_slice() {
        // kind and some distributions: the kubelet's cgroups under kubelet.slice.
        assert_eq!(
            at(&format!(
                "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
                 kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
            )),
            container(Qos::BestEffort, Some(Runtime::Containerd))
        );
    }

    #[test]
    fn not_containers() {
        // conmon monitors, sandboxes' children, mismatched QoS names, odd names.
        assert_eq!(
            at(&format!(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{ID}.scope"
            )),
            None
        );
        assert_eq!(
            at(&format!(
                "kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod{UID_}.slice"
            )),
            None
        );
        assert_eq!(
            at(&format!("kubepods/burstable/pod{UID}/{ID}/container")),
            None
        );
        assert_eq!(at(&format!("kubepods/burstable/pod{UID}/not-an-id")), None);
        assert_eq!(at("kubepods/burstable/pod"), None);
        assert_eq!(at("kubepods/burstable/pod..%2f"), None);
        assert_eq!(at("system.slice/sshd.service"), None);
        assert_eq!(at(&format!("machine.slice/libpod-conmon-{ID}.scope")), None);
        assert_eq!(at(&format!("system.slice/{ID}.scope")), None);
        assert_eq!(at(&format!("docker/{}", ID.to_uppercase())), None);
        assert_eq!(at(""), None);
    }

    #[test]
    fn runtimes_without_kubernetes() {
        let bare = |runtime| {
            Some(CgroupRole::Container {
                pod: None,
                runtime,
                id: ID.into(),
            })
        };
        assert_eq!(
            at(&format!("/sys/fs/cgroup/machine.slice/libpod-{ID}.scope")),
            bare(Some(Runtime::Podman))
        );
        assert_eq!(
            at(&format!("libpod_parent/libpod-{ID}")),
            bare(Some(Runtime::Podman))
        );
        assert_eq!(
            at(&format!("system.slice/docker-{ID}.scope")),
            bare(Some(Runtime::Docker))
        );
        assert_eq!(at(&format!("/docker/{ID}")), bare(Some(Runtime::Docker)));
        assert_eq!(
            at(&format!("system.slice/nerdctl-{ID}.scope")),
            bare(Some(Runtime::Containerd))
        );
        assert_eq!(at(&format!("default/{ID}")), bare(None));
        // Hex names of other lengths are not containers (the project's CI sandbox names its
        // cgroups by 32-character hex ids).
        assert_eq!(at("process_api/5c0cf2219ac848acef2e54a32e1ab783"), None);
        assert_eq!(at(&format!("docker/{}", &ID[..12])), None);
    }
}
