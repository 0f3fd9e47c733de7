//! The resolver on fixture nodes: every kubelet layout, runtime and QoS class, multi-container
//! pods, restarts, and the errors users get for names that do not resolve.
use std::path::Path;

use super::{
    classify::{Qos, Runtime},
    inventory::short_id,
    limit::{applied_limit, LimitSource},
    select::SelectError,
    testtree::*,
    Discovery, Inventory, Selection, Selector,
};
use crate::cgroup::{CgroupVersion, LimitCache, MemoryCgroup};

fn names(inventory: &Inventory) -> Vec<String> {
    inventory
        .containers
        .iter()
        .map(|c| c.identity.short().unwrap_or_else(|| "?".into()))
        .collect()
}

fn pod(name: &str, namespace: Option<&str>, container: Option<&str>) -> Selector {
    Selector::Pod {
        name: name.into(),
        namespace: namespace.map(Into::into),
        container: container.map(Into::into),
    }
}

fn resolve(selector: &Selector, inventory: &Inventory) -> Result<Selection, SelectError> {
    selector.resolve(inventory, "/var/log/pods", "/sys/fs/cgroup")
}

fn watched(node: &FixtureNode, selection: Selection) -> Vec<String> {
    let discovery = Discovery {
        roots: node.roots(),
        selection,
    };
    let inventory = discovery.scan();
    discovery
        .matching(&inventory)
        .map(|c| c.identity.short().unwrap_or_default())
        .collect()
}

#[test]
fn v2_systemd_containerd_names_every_container() {
    let node = FixtureNode::kubelet_v2_systemd();
    let inventory = Inventory::scan(&node.roots());
    assert_eq!(
        names(&inventory),
        [
            "default/batch/worker".to_owned(),
            "shop/web-1/app".to_owned(),
            "shop/web-1/sidecar".to_owned(),
            // The sandbox (pause) container has no log link: named by its pod and id.
            format!("kube-system/dns/{}", short_id(ID_B)),
            "kube-system/dns/coredns".to_owned(),
        ]
    );
    let by_id = |id: &str| {
        inventory
            .containers
            .iter()
            .find(|c| c.identity.container_id.as_deref() == Some(id))
            .map(|c| c.identity.clone())
            .expect("container found")
    };
    let app = by_id(ID_A);
    assert_eq!(app.qos, Some(Qos::Burstable));
    assert_eq!(app.runtime, Some(Runtime::Containerd));
    assert_eq!(app.pod_uid.as_deref(), Some(UID_1));
    assert_eq!(by_id(ID_D).qos, Some(Qos::BestEffort));
    assert_eq!(by_id(ID_E).qos, Some(Qos::Guaranteed));
}

#[test]
fn v1_cgroupfs_every_qos_and_runtime() {
    let node = FixtureNode::new();
    node.cgroup(&format!("kubepods/burstable/pod{UID_1}/{ID_A}"));
    node.cgroup(&format!("kubepods/besteffort/pod{UID_2}/crio-{ID_D}"));
    node.cgroup(&format!("kubepods/pod{UID_3}/docker-{ID_E}"));
    node.cgroup("system.slice/docker.service");
    node.pod_logs("shop", "web-1", UID_1, &["app"]);
    node.container_log("shop", "web-1", "app", ID_A);
    node.pod_logs("default", "batch", UID_2, &["worker"]);
    node.container_log("default", "batch", "worker", ID_D);
    node.pod_logs("kube-system", "dns", UID_3, &["coredns"]);
    node.container_log("kube-system", "dns", "coredns", ID_E);
    let inventory = Inventory::scan(&node.roots());
    let found: Vec<(String, Option<Qos>, Option<Runtime>)> = inventory
        .containers
        .iter()
        .map(|c| {
            (
                c.identity.short().unwrap_or_default(),
                c.identity.qos,
                c.identity.runtime,
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "default/batch/worker".into(),
                Some(Qos::BestEffort),
                Some(Runtime::Crio)
            ),
            ("shop/web-1/app".into(), Some(Qos::Burstable), None),
            (
                "kube-system/dns/coredns".into(),
                Some(Qos::Guaranteed),
                Some(Runtime::Docker)
            ),
        ]
    );
}

/// Log directories with entries that do not parse (stray files and directories, names
/// without the kubelet's separators, a FIFO that would block whoever opened it, a link to
/// nowhere) are skipped: the real containers are named as ever, and the look does not stall.
#[test]
fn log_entries_that_do_not_parse_are_skipped() {
    let node = FixtureNode::new();
    node.cgroup(&format!("kubepods/burstable/pod{UID_1}/{ID_A}"));
    node.cgroup(&format!("kubepods/besteffort/pod{UID_2}/{ID_D}"));
    node.pod_logs("shop", "web-1", UID_1, &["app"]);
    node.container_log("shop", "web-1", "app", ID_A);
    node.pod_logs("default", "batch", UID_2, &["worker"]);
    node.container_log("default", "batch", "worker", ID_D);
    let pods = node.roots().pod_logs;
    let links = node.roots().container_logs;
    std::fs::write(pods.join("README"), "not a pod").expect("stray file");
    std::fs::create_dir(pods.join("junk")).expect("stray dir");
    std::fs::create_dir(pods.join("shop_web-2_not-a-uid")).expect("bad uid");
    std::fs::create_dir(pods.join("UPPER_Case_0d3b3a5e-6f1c-4b7e-9a4d-2c8e1f0b7a6d"))
        .expect("bad names");
    std::fs::write(links.join("nonsense.log"), "").expect("stray log");
    std::os::unix::fs::symlink("/nonexistent", links.join("a_b.log")).expect("short name");
    let fifo = std::ffi::CString::new(
        links
            .join("web-1_shop_app-fifo.log")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .expect("path");
    // SAFETY: mkfifo with a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
    let inventory = Inventory::scan(&node.roots());
    let mut found = names(&inventory);
    found.sort();
    assert_eq!(found, ["default/batch/worker", "shop/web-1/app"]);
}

#[test]
fn systemd_crio_and_docker_scopes_skip_conmon() {
    let node = FixtureNode::new();
    let slice = format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
        UID_1.replace('-', "_")
    );
    node.cgroup(&format!("{slice}/crio-{ID_A}.scope/container"));
    node.cgroup(&format!("{slice}/crio-conmon-{ID_A}.scope"));
    node.cgroup(&format!("{slice}/docker-{ID_C}.scope"));
    node.pod_logs("shop", "web-1", UID_1, &["app", "sidecar"]);
    node.container_log("shop", "web-1", "app", ID_A);
    node.container_log("shop", "web-1", "sidecar", ID_C);
    let inventory = Inventory::scan(&node.roots());
    assert_eq!(names(&inventory), ["shop/web-1/app", "shop/web-1/sidecar"]);
    assert_eq!(
        inventory.containers[0].identity.runtime,
        Some(Runtime::Crio)
    );
    assert_eq!(
        inventory.containers[1].identity.runtime,
        Some(Runtime::Docker)
    );
    // The container's cgroup is the scope, not crun's `container` subgroup inside it.
    assert!(inventory.containers[0]
        .path
        .ends_with(format!("crio-{ID_A}.scope")));
}

#[test]
fn podman_and_docker_without_kubernetes() {
    let node = FixtureNode::new();
    node.cgroup(&format!("machine.slice/libpod-{ID_A}.scope/container"));
    node.cgroup(&format!("machine.slice/libpod-conmon-{ID_A}.scope"));
    node.cgroup(&format!("system.slice/docker-{ID_B}.scope"));
    node.cgroup(&format!("docker/{ID_C}"));
    let inventory = Inventory::scan(&node.roots());
    let found: Vec<(Option<&str>, Option<Runtime>, Option<&str>)> = inventory
        .containers
        .iter()
        .map(|c| {
            (
                c.identity.container_id.as_deref(),
                c.identity.runtime,
                c.identity.pod.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (Some(ID_C), Some(Runtime::Docker), None),
            (Some(ID_A), Some(Runtime::Podman), None),
            (Some(ID_B), Some(Runtime::Docker), None),
        ]
    );
    // By id prefix, as `docker` and `podman` accept.
    assert_eq!(
        resolve(&Selector::Container("bbbb7e".into()), &inventory),
        Ok(Selection::ContainerId(ID_B.into()))
    );
    assert_eq!(
        watched(&node, Selection::ContainerId(ID_B.into())),
        [short_id(ID_B)]
    );
    // By the names the runtimes gave them, from their state on disk.
    node.state_file(
        &format!("var/lib/docker/containers/{ID_B}/config.v2.json"),
        r#"{"Name":"/api"}"#,
    );
    node.state_file(
        "var/lib/containers/storage/overlay-containers/containers.json",
        &format!(r#"[{{"id":"{ID_A}","names":["cache"]}}]"#),
    );
    let inventory = Inventory::scan(&node.roots());
    assert_eq!(
        resolve(&Selector::Container("api".into()), &inventory),
        Ok(Selection::Named("api".into()))
    );
    assert_eq!(watched(&node, Selection::Named("cache".into())), ["cache"]);
    let err = resolve(&Selector::Container("cahce".into()), &inventory).expect_err("typo");
    assert!(err.to_string().contains("cache"), "{err}");
}

#[test]
fn pod_selection_and_one_container_of_it() {
    let node = FixtureNode::kubelet_v2_systemd();
    let inventory = Inventory::scan(&node.roots());
    let selection = resolve(&pod("web-1", None, None), &inventory).expect("resolves");
    assert_eq!(
        selection,
        Selection::Pod {
            namespace: "shop".into(),
            name: "web-1".into(),
            container: None
        }
    );
    assert_eq!(
        watched(&node, selection),
        ["shop/web-1/app", "shop/web-1/sidecar"]
    );
    let one = resolve(&pod("web-1", Some("shop"), Some("sidecar")), &inventory).expect("resolves");
    assert_eq!(watched(&node, one), ["shop/web-1/sidecar"]);
    assert_eq!(
        resolve(&pod("web-1", None, Some("db")), &inventory),
        Err(SelectError::UnknownPodContainer {
            pod: "shop/web-1".into(),
            container: "db".into(),
            known: vec!["app".into(), "sidecar".into()],
        })
    );
}

#[test]
fn unknown_pod_lists_the_closest_names() {
    let node = FixtureNode::kubelet_v2_systemd();
    let inventory = Inventory::scan(&node.roots());
    let err = resolve(&pod("web-2", None, None), &inventory).expect_err("no such pod");
    let SelectError::UnknownPod { ref closest, .. } = err else {
        panic!("wrong error {err:?}");
    };
    assert_eq!(closest, &["shop/web-1".to_owned()]);
    let message = err.to_string();
    assert!(message.contains("no pod named \"web-2\""), "{message}");
    assert!(message.contains("shop/web-1"), "{message}");
    // Nothing similar: say so, and where to look.
    let message = resolve(&pod("zzzzzzzz", None, None), &inventory)
        .expect_err("no such pod")
        .to_string();
    assert!(message.contains("--pod-logs"), "{message}");
    // Right name, wrong namespace.
    let err = resolve(&pod("web-1", Some("default"), None), &inventory).expect_err("wrong ns");
    assert!(
        err.to_string().contains("in namespace \"default\""),
        "{err}"
    );
}

#[test]
fn a_name_in_two_namespaces_asks_for_one() {
    let node = FixtureNode::kubelet_v2_systemd();
    node.pod_logs(
        "staging",
        "web-1",
        UID_2.replace('7', "8").as_str(),
        &["app"],
    );
    let inventory = Inventory::scan(&node.roots());
    let err = resolve(&pod("web-1", None, None), &inventory).expect_err("ambiguous");
    assert_eq!(
        err,
        SelectError::AmbiguousPod {
            name: "web-1".into(),
            namespaces: vec!["shop".into(), "staging".into()],
        }
    );
    assert!(err.to_string().contains("--namespace"));
    assert!(resolve(&pod("web-1", Some("staging"), None), &inventory).is_ok());
}

#[test]
fn a_pod_without_a_running_container_is_waited_for() {
    let node = FixtureNode::new();
    node.pod_logs("shop", "web-1", UID_1, &["app"]);
    let inventory = Inventory::scan(&node.roots());
    let selection = resolve(&pod("web-1", None, None), &inventory).expect("pod exists");
    assert!(watched(&node, selection.clone()).is_empty());
    assert!(selection.still_exists(&inventory));
    // Its container starts.
    node.cgroup(&format!("kubepods/burstable/pod{UID_1}/{ID_A}"));
    node.container_log("shop", "web-1", "app", ID_A);
    assert_eq!(watched(&node, selection.clone()), ["shop/web-1/app"]);
    // The pod is deleted: nothing left to wait for.
    node.remove(&format!("pods/shop_web-1_{UID_1}"));
    node.remove(&format!("containers/web-1_shop_app-{ID_A}.log"));
    node.remove(&format!("cgroup/kubepods/burstable/pod{UID_1}"));
    assert!(!selection.still_exists(&Inventory::scan(&node.roots())));
}

#[test]
fn a_restarted_container_is_the_same_pod_container() {
    let node = FixtureNode::new();
    node.pod_logs("shop", "web-1", UID_1, &["app"]);
    node.cgroup(&format!("kubepods/burstable/pod{UID_1}/{ID_A}"));
    node.container_log("shop", "web-1", "app", ID_A);
    let selection = resolve(
        &pod("web-1", None, Some("app")),
        &Inventory::scan(&node.roots()),
    )
    .expect("resolves");
    // OOM-killed; the runtime starts a new container (new id, new cgroup) and the kubelet
    // links its log; the old cgroup goes a moment later.
    node.cgroup(&format!("kubepods/burstable/pod{UID_1}/{ID_B}"));
    node.container_log("shop", "web-1", "app", ID_B);
    let both: Vec<Option<String>> = Discovery {
        roots: node.roots(),
        selection: selection.clone(),
    }
    .scan()
    .containers
    .iter()
    .map(|c| c.identity.container_id.clone())
    .collect();
    assert_eq!(both, [Some(ID_A.to_owned()), Some(ID_B.to_owned())]);
    node.remove(&format!("cgroup/kubepods/burstable/pod{UID_1}/{ID_A}"));
    node.remove(&format!("containers/web-1_shop_app-{ID_A}.log"));
    let inventory = Inventory::scan(&node.roots());
    let now: Vec<_> = inventory
        .containers
        .iter()
        .filter(|c| selection.matches(c))
        .map(|c| {
            (
                c.identity.container.clone(),
                c.identity.container_id.clone(),
            )
        })
        .collect();
    assert_eq!(now, [(Some("app".to_owned()), Some(ID_B.to_owned()))]);
}

#[test]
fn container_by_name_follows_restarts_and_by_id_does_not() {
    let node = FixtureNode::kubelet_v2_systemd();
    let inventory = Inventory::scan(&node.roots());
    assert_eq!(
        resolve(&Selector::Container("coredns".into()), &inventory),
        Ok(Selection::Pod {
            namespace: "kube-system".into(),
            name: "dns".into(),
            container: Some("coredns".into()),
        })
    );
    assert_eq!(
        resolve(&Selector::Container(ID_E[..12].into()), &inventory),
        Ok(Selection::ContainerId(ID_E.into()))
    );
    // A full id that is not running yet is waited for.
    let future = ID_A.replace("aaaa", "9999");
    assert_eq!(
        resolve(&Selector::Container(future.clone()), &inventory),
        Ok(Selection::ContainerId(future))
    );
    let err = resolve(&Selector::Container("corends".into()), &inventory).expect_err("typo");
    assert!(err.to_string().contains("coredns"), "{err}");
}

#[test]
fn ambiguous_container_names_and_prefixes() {
    let node = FixtureNode::kubelet_v2_systemd();
    let other = ID_A.replace("aaaa", "ffff");
    node.pod_logs("staging", "web-1", &UID_2.replace('7', "8"), &["app"]);
    node.container_log("staging", "web-1", "app", &other);
    let inventory = Inventory::scan(&node.roots());
    let err = resolve(&Selector::Container("app".into()), &inventory).expect_err("two pods");
    assert!(
        matches!(err, SelectError::AmbiguousContainer { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("shop/web-1/app"), "{err}");
    // Every fixture id shares the tail; a prefix common to all is ambiguous only when it
    // matches several.
    let node = FixtureNode::new();
    node.cgroup(&format!("docker/{ID_A}"));
    node.cgroup(&format!("docker/{}", ID_A.replace("aaaa7e", "aaaa8e")));
    let inventory = Inventory::scan(&node.roots());
    let err = resolve(&Selector::Container("aaaa".into()), &inventory).expect_err("two ids");
    assert!(
        matches!(err, SelectError::AmbiguousContainer { .. }),
        "{err:?}"
    );
    assert!(resolve(&Selector::Container("aaaa7e".into()), &inventory).is_ok());
}

#[test]
fn names_that_could_escape_the_roots_are_refused() {
    let inventory = Inventory::default();
    for selector in [
        pod("../x", None, None),
        pod("a/b", None, None),
        pod("..", None, None),
        pod("", None, None),
        pod("web", Some("a/b"), None),
        pod("web", Some(".."), None),
        pod("web", None, Some("../../etc")),
        Selector::Container("../x".into()),
        Selector::Container("/etc/passwd".into()),
    ] {
        let err = resolve(&selector, &inventory).expect_err("refused");
        assert!(
            matches!(err, SelectError::InvalidName { .. }),
            "{selector:?}: {err:?}"
        );
    }
}

#[test]
fn limit_falls_back_to_pod_then_node() {
    let node = FixtureNode::new();
    let kubepods = node.cgroup("kubepods.slice");
    let qos = node.cgroup("kubepods.slice/kubepods-burstable.slice");
    let pod = node.cgroup(&format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
        UID_1.replace('-', "_")
    ));
    let container = node.cgroup(&format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID_A}.scope",
        UID_1.replace('-', "_")
    ));
    for dir in [&kubepods, &qos, &pod, &container] {
        node.write(dir, "memory.max", "max\n");
        node.write(dir, "memory.current", "0\n");
    }
    let open = || MemoryCgroup::open_with_version(&container, CgroupVersion::V2).expect("fixture");
    let applied = |c: &MemoryCgroup| {
        applied_limit(c, Some(1 << 30), &mut LimitCache::default()).expect("limit")
    };

    let unlimited = applied(&open());
    assert_eq!(
        (unlimited.bytes, unlimited.source),
        (Some(1 << 30), LimitSource::Node)
    );
    node.write(&kubepods, "memory.max", "900000000\n");
    assert_eq!(applied(&open()).source, LimitSource::Kubepods);
    node.write(&qos, "memory.max", "800000000\n");
    assert_eq!(applied(&open()).source, LimitSource::Qos);
    node.write(&pod, "memory.max", "104857600\n");
    let by_pod = applied(&open());
    assert_eq!(
        (by_pod.bytes, by_pod.source),
        (Some(104_857_600), LimitSource::Pod)
    );
    // A cache shared by a round of samples gives the same answers, for siblings too.
    let sibling = node.cgroup(&format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID_C}.scope",
        UID_1.replace('-', "_")
    ));
    node.write(&sibling, "memory.max", "max\n");
    node.write(&sibling, "memory.current", "0\n");
    let sibling = MemoryCgroup::open_with_version(&sibling, CgroupVersion::V2).expect("fixture");
    let mut round = LimitCache::default();
    for c in [&open(), &sibling, &open()] {
        let cached = applied_limit(c, Some(1 << 30), &mut round).expect("limit");
        assert_eq!(cached, applied(c));
        assert_eq!(cached.source, LimitSource::Pod);
    }
    // Until cleared, the round's answer stands; then the new limit is read.
    node.write(&pod, "memory.max", "max\n");
    let stale = applied_limit(&sibling, Some(1 << 30), &mut round).expect("limit");
    assert_eq!(stale.source, LimitSource::Pod);
    round.clear();
    let fresh = applied_limit(&sibling, Some(1 << 30), &mut round).expect("limit");
    assert_eq!(fresh.source, LimitSource::Qos);
    node.write(&pod, "memory.max", "104857600\n");
    // Equal limits: the nearest owner is named (the container's, as the pod spec says).
    node.write(&container, "memory.max", "104857600\n");
    assert_eq!(applied(&open()).source, LimitSource::Container);
    assert!(Path::new(&container).exists());
}
