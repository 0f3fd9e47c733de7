//! Which containers a watch follows: `--pod`, `--container`, `--all`, checked against the
//! node at start and re-applied at every look while watching.
use thiserror::Error;

use super::{
    classify::is_lower_hex,
    inventory::{short_id, FoundContainer, Inventory},
    logs::is_kube_name,
    runtimes::is_runtime_name,
};

/// What the user asked to watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Selector {
    /// A pod by name, optionally in one namespace, optionally one container of it.
    Pod {
        /// Pod name.
        name: String,
        /// Namespace (`None`: whichever has a pod of that name, if only one does).
        namespace: Option<String>,
        /// Container name within the pod.
        container: Option<String>,
    },
    /// A container by id, unique id prefix, or name.
    Container(String),
    /// Every container on the node.
    All,
}

/// The selection once checked against the node: names resolved to one pod or one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Selection {
    /// Containers of the pod `namespace/name` (any uid: a pod deleted and created again
    /// under the same name, as StatefulSets do, is followed), optionally only one container.
    Pod {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// Container name.
        container: Option<String>,
    },
    /// One container by its full id (a restart gives a new id, so this ends with it).
    ContainerId(String),
    /// A container outside Kubernetes by the name its runtime gave it (a container created
    /// again under the same name is followed).
    Named(String),
    /// Every container.
    All,
}

/// Why a selection cannot be watched.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum SelectError {
    /// A name that Kubernetes would never give (and that could point outside the roots).
    #[error(
        "{flag} {value:?} is not a valid name: Kubernetes names use only lowercase letters, \
         digits, '-' and '.'"
    )]
    InvalidName {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
    },
    /// No pod of that name.
    #[error("no pod named {name:?}{} in the pod logs at {pod_logs}; {}", in_namespace(.namespace), closest_hint(.closest, "pods"))]
    UnknownPod {
        /// The name asked for.
        name: String,
        /// The namespace asked for.
        namespace: Option<String>,
        /// Where pods were looked for.
        pod_logs: String,
        /// The most similar names found (`namespace/pod`).
        closest: Vec<String>,
    },
    /// Pods of that name in several namespaces.
    #[error("pod {name:?} is in several namespaces ({}): pick one with --namespace", .namespaces.join(", "))]
    AmbiguousPod {
        /// The name asked for.
        name: String,
        /// The namespaces that have it.
        namespaces: Vec<String>,
    },
    /// The pod has no container of that name.
    #[error("pod {pod} has no container named {container:?}; its containers: {}", list_or_none(.known))]
    UnknownPodContainer {
        /// `namespace/pod`.
        pod: String,
        /// The container name asked for.
        container: String,
        /// Its containers' names.
        known: Vec<String>,
    },
    /// No container with that id, id prefix or name.
    #[error("no container with id or name {query:?} under {cgroup_root}; {}", closest_hint(.closest, "containers"))]
    UnknownContainer {
        /// What was asked for.
        query: String,
        /// Where containers were looked for.
        cgroup_root: String,
        /// The most similar names or ids found.
        closest: Vec<String>,
    },
    /// Several containers match.
    #[error("{query:?} matches several containers ({}): give more of the id, or use --pod and --namespace", .matches.join(", "))]
    AmbiguousContainer {
        /// What was asked for.
        query: String,
        /// What it matched.
        matches: Vec<String>,
    },
}

fn in_namespace(namespace: &Option<String>) -> String {
    namespace
        .as_ref()
        .map(|ns| format!(" in namespace {ns:?}"))
        .unwrap_or_default()
}

fn closest_hint(names: &[String], what: &str) -> String {
    if names.is_empty() {
        format!("no {what} with a similar name were found (check the name, and the --pod-logs, --container-logs and --cgroup-root directories)")
    } else {
        format!("closest {what} found: {}", names.join(", "))
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none known yet".to_owned()
    } else {
        names.join(", ")
    }
}

/// Whether a `--container` value can be an id (prefix) or a name.
fn is_container_query(value: &str) -> bool {
    is_kube_name(value) || is_runtime_name(value)
}

/// Shortest id prefix accepted, as with `docker`: shorter prefixes match too much by chance.
const MIN_ID_PREFIX: usize = 4;

impl Selector {
    /// Rejects names that cannot be Kubernetes names. They are only ever compared with names
    /// read from the node, never joined to a path, so this is about clear messages as much as
    /// safety.
    pub(crate) fn validate(&self) -> Result<(), SelectError> {
        let invalid = |flag, value: &str| SelectError::InvalidName {
            flag,
            value: value.to_owned(),
        };
        match self {
            Selector::Pod {
                name,
                namespace,
                container,
            } => {
                if !is_kube_name(name) {
                    return Err(invalid("--pod", name));
                }
                if let Some(ns) = namespace.as_deref().filter(|ns| !is_kube_name(ns)) {
                    return Err(invalid("--namespace", ns));
                }
                if let Some(c) = container.as_deref().filter(|c| !is_kube_name(c)) {
                    return Err(invalid("--container", c));
                }
            }
            Selector::Container(query) if !is_container_query(query) => {
                return Err(invalid("--container", query));
            }
            Selector::Container(_) | Selector::All => {}
        }
        Ok(())
    }

    /// Resolves names against what the node has now.
    pub(crate) fn resolve(
        &self,
        inventory: &Inventory,
        pod_logs: &str,
        cgroup_root: &str,
    ) -> Result<Selection, SelectError> {
        self.validate()?;
        match self {
            Selector::All => Ok(Selection::All),
            Selector::Pod {
                name,
                namespace,
                container,
            } => resolve_pod(inventory, name, namespace.as_deref(), container, pod_logs),
            Selector::Container(query) => resolve_container(inventory, query, cgroup_root),
        }
    }
}

fn resolve_pod(
    inventory: &Inventory,
    name: &str,
    namespace: Option<&str>,
    container: &Option<String>,
    pod_logs: &str,
) -> Result<Selection, SelectError> {
    let names = inventory.pod_names();
    let mut namespaces: Vec<String> = names
        .iter()
        .filter(|(ns, pod)| pod == name && namespace.is_none_or(|want| want == ns))
        .map(|(ns, _)| ns.clone())
        .collect();
    namespaces.dedup();
    let namespace = match namespaces.len() {
        0 => {
            let candidates: Vec<String> = names
                .iter()
                .map(|(ns, pod)| format!("{ns}/{pod}"))
                .collect();
            let query = match namespace {
                Some(ns) => format!("{ns}/{name}"),
                None => name.to_owned(),
            };
            return Err(SelectError::UnknownPod {
                name: name.to_owned(),
                namespace: namespace.map(str::to_owned),
                pod_logs: pod_logs.to_owned(),
                closest: closest_names(&query, &candidates, |c| {
                    // Without --namespace, compare with the pod part only.
                    if namespace.is_some() {
                        c
                    } else {
                        c.split_once('/').map_or(c, |(_, pod)| pod)
                    }
                }),
            });
        }
        1 => namespaces.remove(0),
        _ => {
            return Err(SelectError::AmbiguousPod {
                name: name.to_owned(),
                namespaces,
            })
        }
    };
    if let Some(container) = container {
        // Container names come from the pod's log directories and the container links.
        let mut known: Vec<String> = inventory
            .logs
            .pods
            .values()
            .filter(|p| p.namespace == namespace && p.name == name)
            .flat_map(|p| p.containers.iter().cloned())
            .chain(
                inventory
                    .logs
                    .containers
                    .values()
                    .filter(|c| c.namespace == namespace && c.pod == name)
                    .map(|c| c.container.clone()),
            )
            .collect();
        known.sort();
        known.dedup();
        if !known.contains(container) {
            return Err(SelectError::UnknownPodContainer {
                pod: format!("{namespace}/{name}"),
                container: container.clone(),
                known,
            });
        }
    }
    Ok(Selection::Pod {
        namespace,
        name: name.to_owned(),
        container: container.clone(),
    })
}

fn resolve_container(
    inventory: &Inventory,
    query: &str,
    cgroup_root: &str,
) -> Result<Selection, SelectError> {
    let describe = |c: &FoundContainer| {
        c.identity
            .short()
            .unwrap_or_else(|| c.path.display().to_string())
    };
    // An id, or a unique prefix of one.
    if query.len() >= MIN_ID_PREFIX && is_container_id_prefix(query) {
        let matches: Vec<&FoundContainer> = inventory
            .containers
            .iter()
            .filter(|c| {
                c.identity
                    .container_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with(query))
            })
            .collect();
        match matches.as_slice() {
            [one] => {
                if let Some(id) = &one.identity.container_id {
                    return Ok(Selection::ContainerId(id.clone()));
                }
            }
            [] => {}
            many => {
                return Err(SelectError::AmbiguousContainer {
                    query: query.to_owned(),
                    matches: many.iter().map(|c| describe(c)).collect(),
                })
            }
        }
    }
    // A full id of a container that has not started yet: waited for, as a pod is.
    if query.len() == 64 && is_container_id_prefix(query) {
        return Ok(Selection::ContainerId(query.to_owned()));
    }
    // A container name: of a pod's container (followed across restarts, like --pod
    // --container), or one a runtime gave outside Kubernetes.
    let mut pods: Vec<(String, String)> = inventory
        .logs
        .containers
        .values()
        .filter(|c| c.container == query)
        .map(|c| (c.namespace.clone(), c.pod.clone()))
        .collect();
    pods.sort();
    pods.dedup();
    let outside: Vec<&str> = inventory
        .runtime_names
        .0
        .iter()
        .filter(|(_, name)| name.as_str() == query)
        .map(|(id, _)| short_id(id))
        .collect();
    match (pods.len(), outside.len()) {
        (1, 0) => {
            let (namespace, name) = pods.remove(0);
            Ok(Selection::Pod {
                namespace,
                name,
                container: Some(query.to_owned()),
            })
        }
        (0, 1) => Ok(Selection::Named(query.to_owned())),
        (0, 0) => {
            let candidates: Vec<String> = inventory
                .containers
                .iter()
                .flat_map(|c| {
                    [
                        c.identity.container.clone(),
                        c.identity
                            .container_id
                            .as_deref()
                            .map(|id| short_id(id).to_owned()),
                    ]
                })
                .flatten()
                .collect();
            Err(SelectError::UnknownContainer {
                query: query.to_owned(),
                cgroup_root: cgroup_root.to_owned(),
                closest: closest_names(query, &candidates, |c| c),
            })
        }
        _ => {
            let mut matches: Vec<String> = pods
                .iter()
                .map(|(ns, pod)| format!("{ns}/{pod}/{query}"))
                .collect();
            matches.extend(outside.iter().map(|id| format!("{query} ({id})")));
            Err(SelectError::AmbiguousContainer {
                query: query.to_owned(),
                matches,
            })
        }
    }
}

fn is_container_id_prefix(text: &str) -> bool {
    text.len() <= 64 && is_lower_hex(text)
}

impl Selection {
    /// Whether a container found on the node is part of the watch.
    pub(crate) fn matches(&self, found: &FoundContainer) -> bool {
        let id = &found.identity;
        match self {
            Selection::All => true,
            Selection::ContainerId(want) => id.container_id.as_deref() == Some(want),
            Selection::Named(want) => id.pod_uid.is_none() && id.container.as_deref() == Some(want),
            Selection::Pod {
                namespace,
                name,
                container,
            } => {
                id.namespace.as_deref() == Some(namespace)
                    && id.pod.as_deref() == Some(name)
                    && container
                        .as_deref()
                        .is_none_or(|want| id.container.as_deref() == Some(want))
            }
        }
    }

    /// Whether what was selected still exists on the node, so the watch should go on even
    /// with no container running: a pod while its log directory is there, every container
    /// always; one container id only while its cgroup is.
    pub(crate) fn still_exists(&self, inventory: &Inventory) -> bool {
        match self {
            Selection::All => true,
            Selection::ContainerId(_) => inventory.containers.iter().any(|c| self.matches(c)),
            Selection::Named(name) => inventory.runtime_names.0.values().any(|n| n == name),
            Selection::Pod {
                namespace, name, ..
            } => inventory
                .pod_names()
                .iter()
                .any(|(ns, pod)| ns == namespace && pod == name),
        }
    }

    /// For messages: what is watched.
    pub(crate) fn describe(&self) -> String {
        match self {
            Selection::All => "every container".to_owned(),
            Selection::ContainerId(id) => format!("container {}", short_id(id)),
            Selection::Named(name) => format!("container {name}"),
            Selection::Pod {
                namespace,
                name,
                container: None,
            } => format!("pod {namespace}/{name}"),
            Selection::Pod {
                namespace,
                name,
                container: Some(c),
            } => format!("container {c} of pod {namespace}/{name}"),
        }
    }
}

/// Up to five candidates closest to `query` by edit distance (of `key(candidate)`), nearest
/// first; only those close enough to be a plausible typo, or containing the query.
pub(crate) fn closest_names<'a>(
    query: &str,
    candidates: &'a [String],
    key: impl Fn(&'a str) -> &'a str,
) -> Vec<String> {
    let limit = (query.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &String)> = candidates
        .iter()
        .filter_map(|c| {
            let k = key(c);
            let d = edit_distance(query, k);
            (d <= limit || k.contains(query) || query.contains(k)).then_some((d, c))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(5).map(|(_, c)| c.clone()).collect()
}

/// Levenshtein distance over characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}
