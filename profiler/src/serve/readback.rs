//! Reading the rolling recording back for `/report`: the segments of the time asked for, as
//! one recording (the first segment's header, then every complete record line of that time,
//! of the containers asked for), streamed, and bounded before anything is read into a report.
use std::{
    collections::{HashSet, VecDeque},
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::{Path, PathBuf},
};

use super::segments::{line_ts, list};

/// Which containers a report is about: each given field must match (none: every container).
/// Node-wide lines are always in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    /// The pod's namespace.
    pub namespace: Option<String>,
    /// The pod.
    pub pod: Option<String>,
    /// The container's name.
    pub container: Option<String>,
}

impl Filter {
    /// The exact text each field has in a record line (`,"pod":"web-1"`: serde's
    /// escaping, and the comma, so `sender_container` is not `container`).
    fn needles(&self) -> Vec<Vec<u8>> {
        [
            ("namespace", &self.namespace),
            ("pod", &self.pod),
            ("container", &self.container),
        ]
        .into_iter()
        .filter_map(|(key, value)| {
            let value = serde_json::to_string(value.as_ref()?).ok()?;
            Some(format!(",\"{key}\":{value}").into_bytes())
        })
        .collect()
    }

    /// Whether the filter names anything.
    pub(crate) fn is_empty(&self) -> bool {
        self.namespace.is_none() && self.pod.is_none() && self.container.is_none()
    }
}

/// What a report asks for.
#[derive(Clone, Debug)]
pub(crate) struct Ask {
    /// Seconds back from now.
    pub since_s: f64,
    /// Which containers.
    pub filter: Filter,
    /// The most bytes of recording one report reads (it holds their samples in memory).
    pub max_bytes: u64,
    /// The most cgroups one report draws (two charts each).
    pub max_cgroups: usize,
}

/// Why the recording cannot be read back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadBackError {
    /// The directory cannot be listed.
    #[error("cannot read the recording directory {dir}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A segment cannot be read.
    #[error("cannot read the recording {path}")]
    Segment {
        /// The segment.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// Nothing was recorded in the time asked for.
    #[error("nothing was recorded in the last {since_s:.0} s{}", if *filtered { " of the containers asked for" } else { "" })]
    Empty {
        /// The time asked for, seconds.
        since_s: f64,
        /// Whether containers were named.
        filtered: bool,
    },
    /// More than a report can be made of at once.
    #[error(
        "the last {since_s:.0} s are {bytes} bytes of recording, more than the {limit} one \
         report reads: ask for a shorter `since`, or one namespace, pod or container \
         (`&pod=NAME`), or copy the segments in {dir} and run `profiler report` on one"
    )]
    TooBig {
        /// The time asked for, seconds.
        since_s: f64,
        /// Bytes it holds.
        bytes: u64,
        /// The most one report reads.
        limit: u64,
        /// The directory.
        dir: PathBuf,
    },
    /// More containers than one report draws.
    #[error(
        "the last {since_s:.0} s hold {cgroups} containers' cgroups, more than the {limit} one \
         report draws: ask for one namespace, pod or container (`&namespace=NS`, `&pod=NAME`, \
         `&container=NAME`)"
    )]
    TooMany {
        /// The time asked for, seconds.
        since_s: f64,
        /// Cgroups in it.
        cgroups: usize,
        /// The most one report draws.
        limit: usize,
    },
}

/// The recording of `[now - since, now]` for `ask`'s containers as one recording, checked
/// against `ask`'s bounds first (one pass over the lines, which counts exactly what the
/// report would read).
pub(crate) fn read_back(dir: &Path, now: f64, ask: &Ask) -> Result<SegmentReader, ReadBackError> {
    let from = now - ask.since_s;
    let segments = list(dir).map_err(|source| ReadBackError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    // A segment is wanted when its last record is at `from` or after.
    let wanted: VecDeque<PathBuf> = segments
        .into_iter()
        .filter(|s| s.start <= now && s.end >= from)
        .map(|s| s.path)
        .collect();
    let reader = SegmentReader {
        segments: wanted,
        from,
        needles: ask.filter.needles(),
        open: None,
        first: true,
        pending: Vec::new(),
        offset: 0,
    };
    // The bounds, on exactly what would be read: the header first, then the records.
    let mut counting = reader.clone_unread();
    let mut bytes = 0u64;
    let mut lines = 0u64;
    let mut container_lines = 0u64;
    let mut cgroups: HashSet<Vec<u8>> = HashSet::new();
    while let Some((line, path)) = counting.next_line_from() {
        let line = line.map_err(|source| ReadBackError::Segment { path, source })?;
        bytes += line.len() as u64;
        lines += 1;
        if let Some(cgroup) = cgroup_of(&line) {
            container_lines += 1;
            if !cgroups.contains(cgroup) {
                cgroups.insert(cgroup.to_vec());
            }
        }
    }
    if bytes > ask.max_bytes {
        return Err(ReadBackError::TooBig {
            since_s: ask.since_s,
            bytes,
            limit: ask.max_bytes,
            dir: dir.to_path_buf(),
        });
    }
    // Containers named and none found is nothing, whatever the node did meanwhile.
    if lines <= 1 || (!ask.filter.is_empty() && container_lines == 0) {
        return Err(ReadBackError::Empty {
            since_s: ask.since_s,
            filtered: !ask.filter.is_empty(),
        });
    }
    if cgroups.len() > ask.max_cgroups {
        return Err(ReadBackError::TooMany {
            since_s: ask.since_s,
            cgroups: cgroups.len(),
            limit: ask.max_cgroups,
        });
    }
    Ok(reader)
}

/// The raw `"cgroup":"..."` value of a record line (`None` for node-wide lines).
fn cgroup_of(line: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b",\"cgroup\":\"";
    let at = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &line[at..];
    // The value ends at the first unescaped quote.
    let mut escaped = false;
    let end = rest.iter().position(|&b| {
        let end = b == b'"' && !escaped;
        escaped = b == b'\\' && !escaped;
        end
    })?;
    Some(&rest[..end])
}

/// Reads the segments as one recording: see [`read_back`].
pub(crate) struct SegmentReader {
    segments: VecDeque<PathBuf>,
    from: f64,
    /// What every line about a container must hold (its filter).
    needles: Vec<Vec<u8>>,
    open: Option<(BufReader<File>, PathBuf)>,
    first: bool,
    /// The line being handed out, from `offset`.
    pending: Vec<u8>,
    offset: usize,
}

impl SegmentReader {
    /// The same reading, from the start.
    fn clone_unread(&self) -> Self {
        Self {
            segments: self.segments.clone(),
            from: self.from,
            needles: self.needles.clone(),
            open: None,
            first: true,
            pending: Vec::new(),
            offset: 0,
        }
    }

    /// The next line with the segment it came from, or `None` at the end.
    fn next_line_from(&mut self) -> Option<(io::Result<Vec<u8>>, PathBuf)> {
        let path = self
            .open
            .as_ref()
            .map(|(_, p)| p.clone())
            .or_else(|| self.segments.front().cloned())
            .unwrap_or_default();
        match self.next_line() {
            Ok(Some(line)) => Some((Ok(line), path)),
            Ok(None) => None,
            Err(e) => Some((Err(e), path)),
        }
    }

    /// Whether a record line is about a container the filter keeps (node-wide lines always).
    fn kept(&self, line: &[u8]) -> bool {
        self.needles.is_empty()
            || !has(line, b",\"cgroup\":\"")
            || self.needles.iter().all(|needle| has(line, needle))
    }

    /// The next line to hand out (with its newline), or `None` at the end.
    fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            let (reader, _) = match self.open.as_mut() {
                Some(r) => r,
                None => {
                    let Some(path) = self.segments.pop_front() else {
                        return Ok(None);
                    };
                    match File::open(&path) {
                        Ok(file) => {
                            let mut reader = BufReader::with_capacity(64 << 10, file);
                            let mut header = Vec::new();
                            reader.read_until(b'\n', &mut header)?;
                            self.open = Some((reader, path));
                            if self.first && header.ends_with(b"\n") {
                                self.first = false;
                                return Ok(Some(self.retimed_header(&header)));
                            }
                            continue;
                        }
                        // Removed meanwhile (expired): the rest still reads.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    }
                }
            };
            let mut line = Vec::new();
            reader.read_until(b'\n', &mut line)?;
            if line.is_empty() {
                self.open = None;
                continue;
            }
            // A line without its newline is being written (or was cut by a kill): left out,
            // so that a later segment's lines still read.
            if !line.ends_with(b"\n") {
                self.open = None;
                continue;
            }
            if line_ts(&line).is_none_or(|ts| ts >= self.from) && self.kept(&line) {
                return Ok(Some(line));
            }
        }
    }

    /// The first segment's header, starting where the report is asked to.
    fn retimed_header(&self, header: &[u8]) -> Vec<u8> {
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(header) else {
            return header.to_vec();
        };
        let started = value["started"].as_f64().unwrap_or(self.from);
        value["started"] = serde_json::json!(started.max(self.from));
        let mut out = serde_json::to_vec(&value).unwrap_or_else(|_| header.to_vec());
        out.push(b'\n');
        out
    }
}

fn has(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl Read for SegmentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.offset >= self.pending.len() {
            match self.next_line()? {
                Some(line) => {
                    self.pending = line;
                    self.offset = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.offset);
        buf[..n].copy_from_slice(&self.pending[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment of four lines: two containers of one namespace, a node line, and a line of
    /// a third container whose sender is named like the first.
    fn recording() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let lines = [
            r#"{"type":"recording","format":"profiler-recording","version":1,"started":1000.0}"#,
            r#"{"ts":1000.5,"cgroup":"/a","namespace":"shop","pod":"web","pod_uid":null,"container":"app","container_id":"1","type":"sample"}"#,
            r#"{"ts":1000.6,"cgroup":"/b","namespace":"shop","pod":"db","pod_uid":null,"container":"pg","container_id":"2","type":"sample"}"#,
            r#"{"ts":1000.7,"cgroup":null,"type":"node"}"#,
            r#"{"ts":1000.8,"cgroup":"/c\"q","namespace":"x","pod":"y","pod_uid":null,"container":"z","container_id":"3","type":"signal","sender_container":"app"}"#,
        ];
        std::fs::write(
            dir.path().join("segment-0000001000000.rec"),
            lines.join("\n") + "\n",
        )
        .expect("write");
        dir
    }

    fn ask(filter: Filter, max_cgroups: usize) -> Ask {
        Ask {
            since_s: 60.0,
            filter,
            max_bytes: 1 << 20,
            max_cgroups,
        }
    }

    fn cgroups(dir: &Path, ask: &Ask) -> Vec<String> {
        let mut text = String::new();
        read_back(dir, 1010.0, ask)
            .expect("reads")
            .read_to_string(&mut text)
            .expect("text");
        let mut lines = text.lines();
        assert!(lines.next().is_some_and(|h| h.contains("\"recording\"")));
        lines
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
                v["cgroup"].as_str().unwrap_or("node").to_owned()
            })
            .collect()
    }

    #[test]
    fn a_filter_keeps_its_containers_and_the_node() {
        let dir = recording();
        let all = cgroups(dir.path(), &ask(Filter::default(), 10));
        assert_eq!(all, ["/a", "/b", "node", "/c\"q"]);
        let pod = Filter {
            pod: Some("web".into()),
            ..Filter::default()
        };
        assert_eq!(cgroups(dir.path(), &ask(pod, 10)), ["/a", "node"]);
        // `sender_container` is not `container`.
        let container = Filter {
            container: Some("app".into()),
            ..Filter::default()
        };
        assert_eq!(cgroups(dir.path(), &ask(container, 10)), ["/a", "node"]);
        let namespace = Filter {
            namespace: Some("shop".into()),
            container: Some("pg".into()),
            ..Filter::default()
        };
        assert_eq!(cgroups(dir.path(), &ask(namespace, 10)), ["/b", "node"]);
        let nobody = Filter {
            pod: Some("nobody".into()),
            ..Filter::default()
        };
        // The node's lines alone are no report of a pod.
        assert!(matches!(
            read_back(dir.path(), 1010.0, &ask(nobody, 10)),
            Err(ReadBackError::Empty { filtered: true, .. })
        ));
    }

    #[test]
    fn too_many_containers_is_refused_with_the_way_out() {
        let dir = recording();
        match read_back(dir.path(), 1010.0, &ask(Filter::default(), 2)) {
            Err(e @ ReadBackError::TooMany { cgroups: 3, .. }) => {
                assert!(e.to_string().contains("&pod=NAME"), "{e}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("3 cgroups read with a limit of 2"),
        }
        let pod = Filter {
            pod: Some("web".into()),
            ..Filter::default()
        };
        assert!(read_back(dir.path(), 1010.0, &ask(pod, 2)).is_ok());
    }

    #[test]
    fn cgroup_values_end_at_their_closing_quote() {
        assert_eq!(
            cgroup_of(br#"{"ts":1,"cgroup":"/c\"q","x":"y"}"#),
            Some(&br#"/c\"q"#[..])
        );
        assert_eq!(cgroup_of(br#"{"ts":1,"cgroup":null}"#), None);
    }
}
