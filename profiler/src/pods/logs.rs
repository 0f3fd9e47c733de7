//! The kubelet's log trees: the only place on a node (without the API server) that names pods,
//! their namespaces and their containers.
//!
//! - `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart count>.log`
//! - `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log`
//!
//! Kubernetes names (DNS labels and subdomains) never contain `_`, which is what makes the
//! directory names parseable. Only names are read: symbolic links are never followed and no
//! log content is opened.
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use super::classify::is_container_id;

/// A pod, as its log directory names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodLogs {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod uid.
    pub uid: String,
    /// Its containers' names (sorted).
    pub containers: Vec<String>,
}

/// A container, as its log link in the containers directory names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContainerLog {
    /// Namespace of its pod.
    pub namespace: String,
    /// Its pod's name.
    pub pod: String,
    /// The container's name in the pod spec.
    pub container: String,
    /// Full container id.
    pub id: String,
}

/// What the two log directories say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogTree {
    /// Pods by uid.
    pub pods: HashMap<String, PodLogs>,
    /// Containers by id.
    pub containers: HashMap<String, ContainerLog>,
    /// The pods' log directories listed (each holds a directory per container).
    pub pod_dirs: Vec<PathBuf>,
}

/// Whether `name` is a valid Kubernetes object name (a DNS subdomain: lowercase letters,
/// digits, `-` and `.`, at most 253 characters). Container names and namespaces are stricter
/// DNS labels, which this admits too.
pub(crate) fn is_kube_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name != "."
        && name != ".."
}

/// Parses a pod log directory name `<namespace>_<pod>_<uid>`.
pub(crate) fn parse_pod_dir(name: &str) -> Option<(String, String, String)> {
    let mut parts = name.split('_');
    let (namespace, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_kube_name(namespace) || !is_kube_name(pod) {
        return None;
    }
    let uid_ok = !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    uid_ok.then(|| (namespace.to_owned(), pod.to_owned(), uid.to_owned()))
}

/// Parses a container log name `<pod>_<namespace>_<container>-<id>.log`.
pub(crate) fn parse_container_log(name: &str) -> Option<ContainerLog> {
    let stem = name.strip_suffix(".log")?;
    let mut parts = stem.split('_');
    let (pod, namespace, rest) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    // Container names may hold `-`; the id is what follows the last one.
    let (container, id) = rest.rsplit_once('-')?;
    let ok = is_kube_name(pod)
        && is_kube_name(namespace)
        && is_kube_name(container)
        && is_container_id(id);
    ok.then(|| ContainerLog {
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        container: container.to_owned(),
        id: id.to_owned(),
    })
}

/// Entry names of a directory; a missing directory is empty (a node without Kubernetes).
fn entry_names(dir: &Path) -> Vec<(String, PathBuf)> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            if err.kind() != std::io::ErrorKind::NotFound {
                log::debug!("cannot list {}: {err}", dir.display());
            }
            return Vec::new();
        }
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok();
            if name.is_none() {
                log::debug!("skipped {}: name is not UTF-8", e.path().display());
            }
            name.map(|n| (n, e.path()))
        })
        .collect()
}

/// Whether `path` is a real directory (not a link to one).
fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

impl LogTree {
    /// Reads the pod log directory and the container log directory. Names that do not parse
    /// are skipped with a debug log.
    pub(crate) fn read(pod_logs: &Path, container_logs: &Path) -> Self {
        let mut tree = LogTree::default();
        for (name, path) in entry_names(pod_logs) {
            let Some((namespace, pod, uid)) = parse_pod_dir(&name) else {
                log::debug!("skipped {}: not <namespace>_<pod>_<uid>", path.display());
                continue;
            };
            if !is_real_dir(&path) {
                log::debug!("skipped {}: not a directory", path.display());
                continue;
            }
            let mut containers: Vec<String> = entry_names(&path)
                .into_iter()
                .filter(|(n, p)| is_kube_name(n) && is_real_dir(p))
                .map(|(n, _)| n)
                .collect();
            containers.sort();
            tree.pod_dirs.push(path.clone());
            tree.pods.insert(
                uid.clone(),
                PodLogs {
                    namespace,
                    name: pod,
                    uid,
                    containers,
                },
            );
        }
        for (name, path) in entry_names(container_logs) {
            match parse_container_log(&name) {
                Some(log) => {
                    tree.containers.insert(log.id.clone(), log);
                }
                None => log::debug!(
                    "skipped {}: not <pod>_<namespace>_<container>-<id>.log",
                    path.display()
                ),
            }
        }
        tree
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4b1d7e0c9a6f3e2d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d";

    #[test]
    fn pod_dirs() {
        assert_eq!(
            parse_pod_dir("kube-system_coredns-5d78c9869d-abcde_0d3b3a5e-6f1c-4b7e"),
            Some((
                "kube-system".into(),
                "coredns-5d78c9869d-abcde".into(),
                "0d3b3a5e-6f1c-4b7e".into()
            ))
        );
        assert_eq!(
            parse_pod_dir("web.example_x_1"),
            Some(("web.example".into(), "x".into(), "1".into()))
        );
        for bad in [
            "",
            "a_b",
            "a_b_c_d",
            "A_b_c",
            "a__c",
            "a_.._c",
            "a_b_",
            "a_b_c/d",
            "a_b_..",
            "ns_pod_uid with space",
        ] {
            assert_eq!(parse_pod_dir(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn container_logs() {
        let name = format!("web-7f9c-xyz_shop_app-server-{ID}.log");
        assert_eq!(
            parse_container_log(&name),
            Some(ContainerLog {
                namespace: "shop".into(),
                pod: "web-7f9c-xyz".into(),
                container: "app-server".into(),
                id: ID.into(),
            })
        );
        for bad in [
            format!("web_shop_app-{ID}"),
            format!("web_shop_app-{ID}.log.gz"),
            format!("web_shop_{ID}.log"),
            "web_shop_app-xyz.log".to_owned(),
            format!("web_shop_x_app-{ID}.log"),
            format!("web_.._app-{ID}.log"),
            format!("Web_shop_app-{ID}.log"),
        ] {
            assert_eq!(parse_container_log(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_a_tree_and_skips_what_does_not_parse() {
        let dir = std::env::temp_dir().join(format!("profiler-logs-{}", std::process::id()));
        let pods = dir.join("pods");
        let containers = dir.join("containers");
        let pod = pods.join("shop_web-1_uid-1");
        fs::create_dir_all(pod.join("app")).expect("test fixture");
        fs::create_dir_all(pod.join("sidecar")).expect("test fixture");
        fs::write(pod.join("app/0.log"), "").expect("test fixture");
        fs::create_dir_all(pods.join("not a pod")).expect("test fixture");
        fs::write(pods.join("shop_file_uid-2"), "").expect("test fixture");
        fs::create_dir_all(&containers).expect("test fixture");
        std::os::unix::fs::symlink(
            pod.join("app/0.log"),
            containers.join(format!("web-1_shop_app-{ID}.log")),
        )
        .expect("test fixture");
        fs::write(containers.join("garbage.log"), "").expect("test fixture");

        let tree = LogTree::read(&pods, &containers);
        fs::remove_dir_all(&dir).expect("test fixture");

        assert_eq!(tree.pods.len(), 1);
        let web = &tree.pods["uid-1"];
        assert_eq!(
            (web.namespace.as_str(), web.name.as_str()),
            ("shop", "web-1")
        );
        assert_eq!(web.containers, ["app", "sidecar"]);
        assert_eq!(tree.containers.len(), 1);
        assert_eq!(tree.containers[ID].container, "app");
    }

    #[test]
    fn missing_dirs_are_empty() {
        let tree = LogTree::read(Path::new("/nonexistent/pods"), Path::new("/nonexistent/c"));
        assert_eq!(tree, LogTree::default());
    }
}
