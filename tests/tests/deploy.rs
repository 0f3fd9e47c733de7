//! The deployment files in `deploy/`: the alert rules pass `promtool check rules` and their unit
//! tests, the example Prometheus configuration passes `promtool check config`, every dashboard
//! query is valid PromQL, the PrometheusRule holds exactly the rules file's groups, the
//! DaemonSet passes `kubernetes-validate --strict`, the resources Kubernetes' schemas do not
//! cover (PodMonitor, PrometheusRule) agree with the DaemonSet, the systemd unit grants the
//! DaemonSet's capabilities, the README's example queries are valid PromQL, and every metric a
//! dashboard query, template variable, alert or the README names is exported by the real agent
//! (and every metric it exports is in the README).
//!
//! `promtool` comes from Debian's `prometheus` package and `kubernetes-validate` from PyPI;
//! `cargo xtask setup` installs both.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use profiler_e2e::promql::metric_names;
use profiler_e2e::{
    find_in_path, sample_value, start_test, Agent, KubeNode, Qos, TempDir, MIB, PATIENCE,
};
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

/// The oldest Kubernetes whose API has every field the DaemonSet uses (`recursiveReadOnly` on
/// volume mounts came in 1.30); it is validated against this one and the newest bundled.
const OLDEST_KUBERNETES: &str = "1.30.0";

/// The repository's `deploy/` directory.
fn deploy() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).join("deploy")
}

#[track_caller]
fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every YAML document of the file at `path` (documents separated by `---` lines).
#[track_caller]
fn yaml_documents(path: &Path) -> Vec<Yaml> {
    let text = read(path);
    let mut documents = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            documents.push(String::new());
        } else if let Some(current) = documents.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    documents
        .iter()
        .map(|document| {
            serde_norway::from_str::<Yaml>(document)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// The only YAML document of the file at `path`.
#[track_caller]
fn yaml_document(path: &Path) -> Yaml {
    let mut documents = yaml_documents(path);
    assert_eq!(
        documents.len(),
        1,
        "{} should hold one YAML document",
        path.display()
    );
    documents.remove(0)
}

/// The JSON file at `path`.
#[track_caller]
fn json(path: &Path) -> Json {
    serde_json::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// The string at `key` of a YAML mapping; panics naming `what` if there is none.
#[track_caller]
fn yaml_str<'a>(value: &'a Yaml, key: &str, what: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{what} has no string {key:?}: {value:?}"))
}

/// `promtool`, or a panic saying how to get it.
#[track_caller]
fn promtool() -> PathBuf {
    find_in_path("promtool").unwrap_or_else(|| {
        panic!(
            "promtool is not on PATH; `cargo xtask setup` installs it (Debian package prometheus)"
        )
    })
}

/// Runs `command` to its end; panics if it cannot start.
#[track_caller]
fn output(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("could not run {command:?}: {e}"))
}

/// The stdout and stderr of `output`, for failure messages.
fn shown(output: &Output) -> String {
    format!(
        "  exit: {}\n  stdout:\n{}\n  stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `promtool <args>` and panics with its output unless it succeeds.
#[track_caller]
fn promtool_passes(args: &[&str]) {
    let out = output(Command::new(promtool()).args(args));
    if !out.status.success() {
        panic!("promtool {} failed:\n{}", args.join(" "), shown(&out));
    }
}

#[test]
fn the_alert_rules_pass_promtool_check() {
    let rules = deploy().join("prometheus/rules.yml");
    promtool_passes(&["check", "rules", &rules.display().to_string()]);
}

#[test]
fn the_alert_rules_pass_their_unit_tests() {
    let tests = deploy().join("prometheus/rules_test.yml");
    promtool_passes(&["test", "rules", &tests.display().to_string()]);
}

#[test]
fn the_example_prometheus_config_passes_promtool_check() {
    let config = deploy().join("prometheus/prometheus.yml");
    promtool_passes(&["check", "config", &config.display().to_string()]);
}

/// Every `expr` in the dashboard: panel targets and annotation queries, with where each is.
fn dashboard_exprs(dashboard: &Json) -> Vec<(String, String)> {
    fn walk(value: &Json, at: &str, found: &mut Vec<(String, String)>) {
        match value {
            Json::Object(map) => {
                let here = map
                    .get("title")
                    .or_else(|| map.get("name"))
                    .and_then(Json::as_str)
                    .map_or_else(|| at.to_owned(), |title| format!("{at} / {title}"));
                for (key, child) in map {
                    match (key.as_str(), child) {
                        ("expr", Json::String(expr)) => found.push((here.clone(), expr.clone())),
                        _ => walk(child, &here, found),
                    }
                }
            }
            Json::Array(items) => items.iter().for_each(|item| walk(item, at, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(&dashboard["panels"], "panel", &mut found);
    walk(&dashboard["annotations"], "annotation", &mut found);
    found
}

/// The queries of the dashboard's query variables (`label_values(...)`), with their names.
#[track_caller]
fn dashboard_variable_queries(dashboard: &Json) -> Vec<(String, String)> {
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("the dashboard has templating.list");
    variables
        .iter()
        .filter(|variable| variable["type"] == "query")
        .map(|variable| {
            let query = match &variable["query"] {
                Json::String(query) => query.clone(),
                other => other["query"]
                    .as_str()
                    .unwrap_or_else(|| panic!("variable without a query: {variable}"))
                    .to_owned(),
            };
            (format!("variable ${}", variable["name"]), query)
        })
        .collect()
}

/// Grafana's variables replaced so that promtool can parse the query: interval variables by a
/// duration, the others (used in regular-expression matchers) by `.*`.
fn without_grafana_variables(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(braced) => braced
                .split_once('}')
                .map(|(inner, tail)| (inner.split(':').next().unwrap_or(inner), tail))
                .unwrap_or((braced, "")),
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        out.push_str(if name.starts_with("__") { "5m" } else { ".*" });
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Panics unless promtool parses every query of `queries` (where it is, the query): it parses
/// rule files, not queries, so each becomes a recording rule.
#[track_caller]
fn promql_parses(what: &str, queries: &[(String, String)]) {
    let mut rules = String::from("groups:\n  - name: queries\n    rules:\n");
    for (index, (_, expr)) in queries.iter().enumerate() {
        let expr = serde_json::to_string(expr).expect("a string serializes");
        rules.push_str(&format!(
            "      - record: query_{index}\n        expr: {expr}\n"
        ));
    }
    let dir = TempDir::new("queries");
    let file = dir.path().join("queries.rules.yml");
    fs::write(&file, &rules).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
    let out = output(Command::new(promtool()).args(["check", "rules"]).arg(&file));
    if !out.status.success() {
        let listing: String = queries
            .iter()
            .enumerate()
            .map(|(index, (at, expr))| format!("  query_{index}: {at}: {expr}\n"))
            .collect();
        panic!(
            "{what}: a query is not valid PromQL:\n{}\nthe queries:\n{listing}",
            shown(&out)
        );
    }
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    let dashboard = json(&deploy().join("grafana/profiler-dashboard.json"));
    let exprs: Vec<(String, String)> = dashboard_exprs(&dashboard)
        .into_iter()
        .map(|(at, expr)| (at, without_grafana_variables(&expr)))
        .collect();
    assert!(
        exprs.len() > 20,
        "expected the dashboard's queries, found {exprs:?}"
    );
    promql_parses("deploy/grafana/profiler-dashboard.json", &exprs);
}

/// The README's section on the agent's metrics (from its heading to the next `## ` heading).
#[track_caller]
fn readme_metrics_section() -> String {
    const HEADING: &str = "## Metrics (profiler serve)";
    let readme = read(&deploy().with_file_name("README.md"));
    let start = readme
        .find(HEADING)
        .unwrap_or_else(|| panic!("README.md has no section {HEADING:?}"));
    let section = &readme[start + HEADING.len()..];
    let end = section.find("\n## ").unwrap_or(section.len());
    section[..end].to_owned()
}

/// The `profiler_...` words of `text`.
fn profiler_words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("profiler_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_readme_metric_examples_are_valid_promql() {
    let section = readme_metrics_section();
    // Inline code spans (the odd pieces between backticks) that name a metric are queries.
    let queries: Vec<(String, String)> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| span.contains("profiler_"))
        .map(|span| {
            let query = span.split_whitespace().collect::<Vec<_>>().join(" ");
            ("README".to_owned(), query)
        })
        .collect();
    assert!(
        queries.len() > 30,
        "expected an example query per metric in README.md, found {queries:?}"
    );
    promql_parses("README.md, Metrics (profiler serve)", &queries);
}

#[test]
fn the_prometheusrule_holds_the_rules_file_groups() {
    let rules = yaml_document(&deploy().join("prometheus/rules.yml"));
    let resource = yaml_document(&deploy().join("kubernetes/prometheusrule.yaml"));
    assert_eq!(
        yaml_str(&resource, "apiVersion", "the PrometheusRule"),
        "monitoring.coreos.com/v1"
    );
    assert_eq!(
        yaml_str(&resource, "kind", "the PrometheusRule"),
        "PrometheusRule"
    );
    let groups = &rules["groups"];
    assert!(
        groups.as_sequence().is_some_and(|g| !g.is_empty()),
        "rules.yml has no groups"
    );
    if &resource["spec"]["groups"] != groups {
        panic!(
            "deploy/kubernetes/prometheusrule.yaml's spec.groups differ from \
             deploy/prometheus/rules.yml's groups; make them equal again\n  rules.yml:\n{}\n  \
             prometheusrule.yaml:\n{}",
            serde_norway::to_string(groups).unwrap_or_default(),
            serde_norway::to_string(&resource["spec"]["groups"]).unwrap_or_default()
        );
    }
}

/// Runs `python3 -m kubernetes_validate <args>`; panics saying how to install it if it is
/// missing.
#[track_caller]
fn kubernetes_validate(args: &[&str]) -> Output {
    let python = find_in_path("python3")
        .unwrap_or_else(|| panic!("python3 is not on PATH; kubernetes-validate (PyPI) needs it"));
    let out = output(
        Command::new(python)
            .args(["-m", "kubernetes_validate"])
            .args(args),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named") {
        panic!(
            "the kubernetes_validate module is not installed for the python3 on PATH; \
             `cargo xtask setup` installs it (pip: kubernetes-validate)\n{}",
            shown(&out)
        );
    }
    out
}

#[test]
fn the_daemonset_passes_kubernetes_validate_strict() {
    let file = deploy().join("kubernetes/daemonset.yaml");
    let resources = yaml_documents(&file).len();
    let path = file.display().to_string();
    // No -k: the newest Kubernetes it bundles.
    for versions in [vec![], vec!["-k", OLDEST_KUBERNETES]] {
        let mut args = vec!["--strict"];
        args.extend(&versions);
        args.push(&path);
        let out = kubernetes_validate(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        // A WARN line means no schema was found, so nothing was checked: that is no pass.
        let all_passed = lines.len() == resources
            && lines
                .iter()
                .all(|l| l.starts_with("INFO") && l.contains(" passed "));
        if !out.status.success() || !all_passed {
            panic!(
                "kubernetes-validate --strict {versions:?} did not pass each of the {resources} \
                 resources of {path}:\n{}",
                shown(&out)
            );
        }
    }
}

/// The DaemonSet of `deploy/kubernetes/daemonset.yaml`.
#[track_caller]
fn daemonset() -> Yaml {
    yaml_documents(&deploy().join("kubernetes/daemonset.yaml"))
        .into_iter()
        .find(|document| document["kind"] == "DaemonSet")
        .expect("deploy/kubernetes/daemonset.yaml holds a DaemonSet")
}

/// The capabilities the DaemonSet's container adds (`BPF`, `PERFMON`, ...).
#[track_caller]
fn added_capabilities(daemonset: &Yaml) -> BTreeSet<String> {
    daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"]
        .as_sequence()
        .expect("the DaemonSet's container adds capabilities")
        .iter()
        .map(|cap| cap.as_str().expect("a capability is a string").to_owned())
        .collect()
}

/// kubernetes-validate knows only Kubernetes' own kinds: for a CRD's kind it finds no schema,
/// says WARN and exits 0, which checks nothing. So the PodMonitor and the PrometheusRule are
/// checked here instead: that kubernetes-validate indeed cannot (should a later version learn
/// them, it must pass them), and that they agree with the DaemonSet.
#[test]
fn the_prometheus_operator_resources_agree_with_the_daemonset() {
    for file in ["podmonitor.yaml", "prometheusrule.yaml"] {
        let path = deploy().join("kubernetes").join(file);
        let out = kubernetes_validate(&["--strict", &path.display().to_string()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let unknown = stdout.contains("WARN") && stdout.contains("Couldn't find schema");
        let passed = stdout.starts_with("INFO") && stdout.contains(" passed ");
        if !out.status.success() || !(unknown || passed) {
            panic!(
                "kubernetes-validate on {}:\n{}",
                path.display(),
                shown(&out)
            );
        }
    }

    let daemonset = daemonset();
    let namespace = yaml_str(
        &daemonset["metadata"],
        "namespace",
        "the DaemonSet's metadata",
    );
    let template = &daemonset["spec"]["template"];
    let container = &template["spec"]["containers"][0];
    let ports = container["ports"]
        .as_sequence()
        .expect("the DaemonSet's container has ports");
    let annotations = &template["metadata"]["annotations"];

    let monitor = yaml_document(&deploy().join("kubernetes/podmonitor.yaml"));
    assert_eq!(
        yaml_str(&monitor, "apiVersion", "the PodMonitor"),
        "monitoring.coreos.com/v1"
    );
    assert_eq!(yaml_str(&monitor, "kind", "the PodMonitor"), "PodMonitor");
    assert_eq!(
        yaml_str(
            &monitor["metadata"],
            "namespace",
            "the PodMonitor's metadata"
        ),
        namespace
    );
    let wanted_labels = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("the PodMonitor selects by matchLabels");
    for (key, value) in wanted_labels {
        assert_eq!(
            &template["metadata"]["labels"][key.as_str().expect("a label name")],
            value,
            "the PodMonitor selects label {key:?}={value:?}, which the DaemonSet's pods lack"
        );
    }
    let namespaces = &monitor["spec"]["namespaceSelector"]["matchNames"];
    assert!(
        namespaces
            .as_sequence()
            .is_some_and(|names| names.iter().any(|n| n.as_str() == Some(namespace))),
        "the PodMonitor does not look in namespace {namespace}: {namespaces:?}"
    );
    let endpoints = monitor["spec"]["podMetricsEndpoints"]
        .as_sequence()
        .expect("the PodMonitor has podMetricsEndpoints");
    for endpoint in endpoints {
        let port_name = yaml_str(endpoint, "port", "a PodMetricsEndpoint");
        let port = ports
            .iter()
            .find(|p| p["name"] == port_name)
            .unwrap_or_else(|| panic!("the DaemonSet's container has no port named {port_name}"));
        assert_eq!(
            Some(
                port["containerPort"]
                    .as_u64()
                    .expect("a port number")
                    .to_string()
            )
            .as_deref(),
            annotations["prometheus.io/port"].as_str(),
            "the prometheus.io/port annotation names another port than the PodMonitor"
        );
        assert_eq!(
            endpoint["path"], annotations["prometheus.io/path"],
            "the PodMonitor scrapes another path than the prometheus.io/path annotation"
        );
        assert_eq!(
            endpoint["honorLabels"], true,
            "without honorLabels the watched containers' namespace/pod/container labels \
             become exported_namespace/..."
        );
    }
    let listen = container["args"]
        .as_sequence()
        .and_then(|args| {
            args.iter()
                .skip_while(|a| a.as_str() != Some("--listen"))
                .nth(1)
                .and_then(Yaml::as_str)
        })
        .expect("the DaemonSet passes --listen");
    let port = annotations["prometheus.io/port"]
        .as_str()
        .expect("a prometheus.io/port annotation");
    assert!(
        listen.ends_with(&format!(":{port}")),
        "the agent listens on {listen}, the annotations scrape port {port}"
    );

    let rule = yaml_document(&deploy().join("kubernetes/prometheusrule.yaml"));
    assert_eq!(
        yaml_str(
            &rule["metadata"],
            "namespace",
            "the PrometheusRule's metadata"
        ),
        namespace
    );
}

#[test]
fn the_systemd_unit_grants_the_daemonsets_capabilities() {
    let unit = read(&deploy().join("systemd/profiler.service"));
    let wanted: BTreeSet<String> = added_capabilities(&daemonset())
        .into_iter()
        .map(|cap| format!("CAP_{cap}"))
        .collect();
    for key in ["CapabilityBoundingSet=", "AmbientCapabilities="] {
        let line = unit
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .unwrap_or_else(|| panic!("the unit has no {key} line"));
        let granted: BTreeSet<String> = line.split_whitespace().map(str::to_owned).collect();
        assert_eq!(
            granted, wanted,
            "{key} in deploy/systemd/profiler.service differs from the DaemonSet's capabilities"
        );
    }
}

/// The metric families named by `# TYPE` lines of a text exposition.
fn type_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Every metric name the deployment files ask Prometheus for, with where each is used: the
/// dashboard's queries and variables, the alerts' expressions, any `profiler_...` word in the
/// rules (their annotations query the ETA and name the next-victim metric), and every metric
/// the README documents.
fn wanted_metrics() -> BTreeMap<String, BTreeSet<String>> {
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut want = |name: String, at: String| {
        wanted.entry(name).or_default().insert(at);
    };
    let dashboard = json(&deploy().join("grafana/profiler-dashboard.json"));
    for (at, expr) in dashboard_exprs(&dashboard)
        .into_iter()
        .chain(dashboard_variable_queries(&dashboard))
    {
        for name in metric_names(&expr) {
            want(name, format!("grafana: {at}"));
        }
    }
    let rules_path = deploy().join("prometheus/rules.yml");
    let rules = yaml_document(&rules_path);
    for group in rules["groups"].as_sequence().expect("rules.yml has groups") {
        for rule in group["rules"].as_sequence().expect("a group has rules") {
            let name = rule["alert"].as_str().or(rule["record"].as_str());
            let expr = yaml_str(rule, "expr", "a rule");
            for metric in metric_names(expr) {
                want(metric, format!("rules.yml: {}", name.unwrap_or("?")));
            }
        }
    }
    for word in profiler_words(&read(&rules_path)) {
        want(word, "rules.yml (text)".to_owned());
    }
    for word in profiler_words(&readme_metrics_section()) {
        want(word, "README.md, Metrics (profiler serve)".to_owned());
    }
    wanted
}

#[test]
fn every_query_names_an_exported_metric() {
    let wanted = wanted_metrics();
    assert!(
        wanted.len() > 20,
        "expected the metrics of the dashboard and the alerts, found {wanted:?}"
    );

    let _test = start_test!();
    // One pod with one steady container, so the per-container families have series on any
    // machine (a fresh one runs no container).
    let node = KubeNode::new("deploy-metrics");
    let pod = node.add_pod("shop", "web-1", Qos::Burstable);
    let container = node.start_container(&pod, "app", Some(64 * MIB), &["hold", "--mib", "8"]);
    let mut args = node.flags();
    args.extend(["--interval", "250ms", "--duration", "20s"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start(&args);

    // The container's series carry the labels the queries select and join by.
    let labels = [
        ("namespace", "shop"),
        ("pod", "web-1"),
        ("container", "app"),
        ("container_id", container.id()),
    ];
    agent.wait_metrics(
        "profiler_container_memory_usage_bytes of shop/web-1/app",
        PATIENCE,
        |body| sample_value(body, "profiler_container_memory_usage_bytes", &labels),
    );

    // Families can appear after the first round (or the first event): scrape until every wanted
    // name has been announced, for a few seconds at most.
    let mut exported = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        exported.extend(type_names(&agent.metrics()));
        if wanted.keys().all(|name| exported.contains(name)) || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(250));
    }

    agent.profiler.terminate();
    let (status, _) = agent.profiler.wait(Duration::from_secs(30));
    if !status.success() {
        agent.profiler.fail(format_args!(
            "expected exit status 0 after SIGTERM, got {status}"
        ));
    }

    let documented = profiler_words(&readme_metrics_section());
    let undocumented: Vec<&String> = exported
        .iter()
        .filter(|name| !documented.contains(*name))
        .collect();
    if !undocumented.is_empty() {
        agent.profiler.fail(format_args!(
            "the agent exports metrics that README.md's \"Metrics (profiler serve)\" does not \
             document: {undocumented:?}"
        ));
    }
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(name, _)| !exported.contains(*name))
        .map(|(name, used)| format!("  {name}, used by {used:?}\n"))
        .collect();
    if !missing.is_empty() {
        agent.profiler.fail(format_args!(
            "the deployment files ask for metrics the agent did not announce (no `# TYPE` line \
             in /metrics). Either a query is wrong, or the agent leaves a family out while it \
             has no series: it must announce every family it exports (`# HELP` and `# TYPE`) \
             also before its first series.\n{}  the agent announced: {exported:?}",
            missing.concat()
        ));
    }
}
