//! Names of containers run without Kubernetes, from the runtimes' own state on disk: docker
//! (`/var/lib/docker/containers/<id>/config.v2.json`), podman and other containers/storage
//! users (`/var/lib/containers/storage/overlay-containers/containers.json`), and nerdctl
//! for containerd (`/var/lib/nerdctl/<hash>/names/<namespace>/<name>`, holding the id).
//!
//! Read-only, size-capped, and tolerant: a runtime that is not installed has no state, and a
//! file in a format this does not know is skipped with a debug log.
use std::{
    collections::HashMap,
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::classify::is_container_id;

/// Bigger state files are not read: they are not what this module expects.
const MAX_STATE_FILE: u64 = 16 << 20;

/// Container id → name, for containers outside Kubernetes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RuntimeNames(pub HashMap<String, String>);

/// Whether `name` is a container name as docker and podman allow them
/// (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
pub(crate) fn is_runtime_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() <= 253
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

fn read_capped(path: &Path) -> Option<String> {
    let file = fs::File::open(path).ok()?;
    let mut text = String::new();
    match file.take(MAX_STATE_FILE + 1).read_to_string(&mut text) {
        Ok(n) if (n as u64) <= MAX_STATE_FILE => Some(text),
        Ok(_) => {
            log::debug!(
                "skipped {}: larger than {MAX_STATE_FILE} bytes",
                path.display()
            );
            None
        }
        Err(e) => {
            log::debug!("skipped {}: {e}", path.display());
            None
        }
    }
}

fn subdirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect()
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(rename = "Name")]
    name: String,
}

#[derive(Deserialize)]
struct StorageContainer {
    id: String,
    #[serde(default)]
    names: Vec<String>,
}

impl RuntimeNames {
    /// Reads the state of every runtime found below `root` (`/` on a node).
    pub(crate) fn read(root: &Path) -> Self {
        let mut names = RuntimeNames::default();
        names.read_docker(&root.join("var/lib/docker/containers"));
        names.read_storage(
            &root.join("var/lib/containers/storage/overlay-containers/containers.json"),
        );
        names.read_nerdctl(&root.join("var/lib/nerdctl"));
        names
    }

    fn insert(&mut self, id: &str, name: &str, from: &Path) {
        if is_container_id(id) && is_runtime_name(name) {
            self.0.insert(id.to_owned(), name.to_owned());
        } else {
            log::debug!(
                "skipped container {id:?} named {name:?} in {}",
                from.display()
            );
        }
    }

    fn read_docker(&mut self, dir: &Path) {
        for (id, path) in subdirs(dir) {
            let file = path.join("config.v2.json");
            let Some(text) = read_capped(&file) else {
                continue;
            };
            match serde_json::from_str::<DockerConfig>(&text) {
                Ok(config) => self.insert(&id, config.name.trim_start_matches('/'), &file),
                Err(e) => log::debug!("skipped {}: {e}", file.display()),
            }
        }
    }

    fn read_storage(&mut self, file: &Path) {
        let Some(text) = read_capped(file) else {
            return;
        };
        match serde_json::from_str::<Vec<StorageContainer>>(&text) {
            Ok(containers) => {
                for c in containers {
                    if let Some(name) = c.names.first() {
                        self.insert(&c.id, name, file);
                    }
                }
            }
            Err(e) => log::debug!("skipped {}: {e}", file.display()),
        }
    }

    fn read_nerdctl(&mut self, dir: &Path) {
        for (_, data_store) in subdirs(dir) {
            for (_, namespace) in subdirs(&data_store.join("names")) {
                let Ok(entries) = fs::read_dir(&namespace) else {
                    continue;
                };
                for entry in entries.filter_map(Result::ok) {
                    let (Ok(name), path) = (entry.file_name().into_string(), entry.path()) else {
                        continue;
                    };
                    if let Some(id) = read_capped(&path) {
                        self.insert(id.trim(), &name, &path);
                    }
                }
            }
        }
    }

    /// The name of container `id`.
    pub(crate) fn name(&self, id: &str) -> Option<&str> {
        self.0.get(id).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID_A: &str = "aaaa7e0c9a6f3e2d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d";
    const ID_B: &str = "bbbb7e0c9a6f3e2d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d";
    const ID_C: &str = "cccc7e0c9a6f3e2d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d";

    #[test]
    fn reads_docker_podman_and_nerdctl_state() {
        let root = std::env::temp_dir().join(format!("profiler-runtimes-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let docker = root.join("var/lib/docker/containers").join(ID_A);
        fs::create_dir_all(&docker).expect("test fixture");
        fs::write(
            docker.join("config.v2.json"),
            format!(r#"{{"ID":"{ID_A}","Name":"/web_1","State":{{"Running":true}}}}"#),
        )
        .expect("test fixture");
        let broken = root.join("var/lib/docker/containers/broken");
        fs::create_dir_all(&broken).expect("test fixture");
        fs::write(broken.join("config.v2.json"), "{not json").expect("test fixture");
        let storage = root.join("var/lib/containers/storage/overlay-containers");
        fs::create_dir_all(&storage).expect("test fixture");
        fs::write(
            storage.join("containers.json"),
            format!(
                r#"[{{"id":"{ID_B}","names":["db"],"image":"x","layer":"y"}},
                    {{"id":"{ID_C}","names":["../../etc"]}}]"#
            ),
        )
        .expect("test fixture");
        let nerdctl = root.join("var/lib/nerdctl/1935db59/names/default");
        fs::create_dir_all(&nerdctl).expect("test fixture");
        fs::write(nerdctl.join("cache"), format!("{ID_C}\n")).expect("test fixture");

        let names = RuntimeNames::read(&root);
        fs::remove_dir_all(&root).expect("test fixture");
        assert_eq!(names.name(ID_A), Some("web_1"));
        assert_eq!(names.name(ID_B), Some("db"));
        // The hostile podman name was refused; nerdctl's name for the same id stands.
        assert_eq!(names.name(ID_C), Some("cache"));
        assert_eq!(names.0.len(), 3);
    }

    #[test]
    fn no_runtime_no_names() {
        assert!(RuntimeNames::read(Path::new("/nonexistent")).0.is_empty());
    }

    #[test]
    fn runtime_names() {
        assert!(is_runtime_name("web_1.a-b"));
        assert!(is_runtime_name("Web"));
        for bad in ["", "-x", "_x", "a/b", "..", "a b", "é"] {
            assert!(!is_runtime_name(bad), "{bad:?}");
        }
    }
}
