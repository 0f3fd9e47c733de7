//! `profiler report`: a recording in, `DIR/report.html` and the charts' PNG files out.
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::chart::{memory_chart, percentile_chart, ChartError};
use crate::files::{prepare_dir, safe_name, write_in};
use crate::page::{render, Charts, Input};
use crate::recording::{scan, Damage, ReadError};
use crate::timeline::Timeline;

/// The page's file name in the output directory.
pub const PAGE: &str = "report.html";

/// What a report wrote.
#[derive(Debug)]
pub struct Written {
    /// `DIR/report.html`.
    pub page: PathBuf,
    /// The PNG files, two per container.
    pub charts: Vec<PathBuf>,
    /// Containers reported.
    pub containers: usize,
    /// Where reading stopped early (the page says so too).
    pub damage: Option<Damage>,
}

/// Why no report was written.
#[derive(Debug, Error)]
pub enum ReportError {
    /// The output directory cannot be written.
    #[error("cannot write the report into {dir} (choose a writable directory with -o DIR)")]
    OutputDir {
        /// The directory.
        dir: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The recording cannot be opened.
    #[error("cannot open the recording {path}")]
    Open {
        /// The recording.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The recording does not read.
    #[error("{path}: {error}")]
    Read {
        /// The recording.
        path: PathBuf,
        /// Why (shown in the message: it is about the file's contents, not a cause below).
        error: ReadError,
    },
    /// Not one line after the header reads.
    #[error(
        "{path}: nothing in the recording is readable: line {line} is not a record ({reason})"
    )]
    NothingReadable {
        /// The recording.
        path: PathBuf,
        /// The first bad line.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A chart could not be drawn.
    #[error(transparent)]
    Chart(#[from] ChartError),
    /// A file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Reads `recording` and writes its report into `dir`, which is made if missing. The directory
/// is checked first: an unwritable one fails before the recording is read.
pub fn write_report(recording: &Path, dir: &Path) -> Result<Written, ReportError> {
    let made = !dir.exists();
    prepare_dir(dir).map_err(|source| ReportError::OutputDir {
        dir: dir.to_owned(),
        source,
    })?;
    let written = write_into(recording, dir);
    if made && written.is_err() {
        // A refused recording leaves no empty directory behind; one with files stays.
        let _ = std::fs::remove_dir(dir);
    }
    written
}

/// A report made in memory: the page (charts inline) and what it covers.
#[derive(Debug)]
pub struct Page {
    /// The whole HTML page.
    pub html: String,
    /// Containers reported.
    pub containers: usize,
    /// Where reading stopped early (the page says so too).
    pub damage: Option<Damage>,
}

/// A report's parts before they are written.
struct Built {
    html: String,
    charts: Vec<Charts>,
    containers: usize,
    damage: Option<Damage>,
}

/// The report of the recording `reader` yields, in memory (`name` is what errors call it).
/// The page is the one [`write_report`] writes: self-contained, its charts inline.
pub fn page_from(reader: impl BufRead, name: &Path) -> Result<Page, ReportError> {
    let built = build(reader, name)?;
    Ok(Page {
        html: built.html,
        containers: built.containers,
        damage: built.damage,
    })
}

/// Reads a recording and renders its page and charts.
fn build(reader: impl BufRead, recording: &Path) -> Result<Built, ReportError> {
    let mut timeline: Option<Timeline> = None;
    let scanned = scan(reader, |header, line| {
        timeline
            .get_or_insert_with(|| Timeline::new(header.started))
            .add(line);
    })
    .map_err(|error| ReportError::Read {
        path: recording.to_owned(),
        error,
    })?;
    let timeline = timeline.unwrap_or_else(|| Timeline::new(scanned.header.started));
    if scanned.lines == 0 {
        if let Some(Damage::BadLine { line, reason }) = &scanned.damage {
            return Err(ReportError::NothingReadable {
                path: recording.to_owned(),
                line: *line,
                reason: reason.clone(),
            });
        }
    }

    let mut charts = Vec::new();
    for (index, container) in timeline.containers.iter().enumerate() {
        let name = container.name();
        let memory = memory_chart(container, &format!("Memory: {name}"))?;
        let percentiles = percentile_chart(container, &format!("Working set: {name}"))?;
        let short = container.short_name();
        let memory_file = safe_name(index + 1, &short, "memory.png");
        let percentiles_file = safe_name(index + 1, &short, "percentiles.png");
        charts.push(Charts {
            memory,
            memory_file,
            percentiles,
            percentiles_file,
        });
    }
    let html = render(&Input {
        header: &scanned.header,
        timeline: &timeline,
        damage: scanned.damage.as_ref(),
        lines: scanned.lines,
        charts: &charts,
    });
    Ok(Built {
        html,
        charts,
        containers: timeline.containers.len(),
        damage: scanned.damage,
    })
}

/// [`write_report`] into a directory that is ready.
fn write_into(recording: &Path, dir: &Path) -> Result<Written, ReportError> {
    let file = File::open(recording).map_err(|source| ReportError::Open {
        path: recording.to_owned(),
        source,
    })?;
    let built = build(BufReader::new(file), recording)?;
    let mut files = Vec::new();
    for c in &built.charts {
        for (file, png) in [
            (&c.memory_file, &c.memory),
            (&c.percentiles_file, &c.percentiles),
        ] {
            files.push(write(dir, file, &png.bytes)?);
        }
    }
    let page = write(dir, PAGE, built.html.as_bytes())?;
    Ok(Written {
        page,
        charts: files,
        containers: built.containers,
        damage: built.damage,
    })
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, ReportError> {
    write_in(dir, name, bytes).map_err(|source| ReportError::Write {
        path: dir.join(name),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::{MEMORY_SIZE, PERCENTILES_SIZE};
    use std::collections::HashSet;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("reports-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Self(dir)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Decodes a PNG file: its size and its distinct colours.
    fn decode(path: &Path) -> (u32, u32, HashSet<[u8; 3]>) {
        let file = File::open(path).expect("open png");
        let mut reader = png::Decoder::new(file).read_info().expect("png header");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("png data");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let colours = buf[..info.buffer_size()]
            .chunks_exact(3)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        (info.width, info.height, colours)
    }

    #[test]
    fn a_real_recording_gives_a_page_and_charts() {
        let dir = Dir::new("leak");
        let written = write_report(&testdata("leak.rec"), &dir.0).expect("report");
        assert_eq!(written.containers, 1);
        assert_eq!(written.damage, None);
        assert_eq!(written.charts.len(), 2);
        let page = std::fs::read_to_string(&written.page).expect("page");
        // The victim's name is shown as text, never as markup.
        assert!(page.contains("leaky&lt;app&gt;"));
        assert!(!page.contains("leaky<app>"));
        assert!(!page.to_ascii_lowercase().contains("<script"));
        // Self-contained: no reference to anything outside the page.
        for external in [
            "src=\"http",
            "href=",
            "url(",
            "@import",
            "src=\"/",
            "src=\"file",
        ] {
            assert!(!page.contains(external), "{external}");
        }
        assert_eq!(page.matches("src=\"data:image/png;base64,").count(), 2);
        assert!(page.contains("How containers ended"));
        // Every line type this profiler writes is known to its reader.
        assert!(!page.contains("types this profiler does not know"));
        assert!(page.contains("critical"));
        for (path, size) in written.charts.iter().zip([MEMORY_SIZE, PERCENTILES_SIZE]) {
            let (width, height, colours) = decode(path);
            assert_eq!((width, height), size, "{}", path.display());
            // Not blank: the series colours and anti-aliased text give many colours.
            assert!(
                colours.len() > 50,
                "{}: {} colours",
                path.display(),
                colours.len()
            );
        }
        let (_, _, memory) = decode(&written.charts[0]);
        for (name, colour) in [("usage", [31, 119, 180]), ("kill", [160, 0, 0])] {
            assert!(memory.contains(&colour), "no {name} line drawn");
        }
    }

    #[test]
    fn damaged_and_unreadable_recordings() {
        let text = std::fs::read_to_string(testdata("leak.rec")).expect("fixture");
        let dir = Dir::new("damaged");
        std::fs::create_dir_all(&dir.0).expect("dir");
        let mut lines: Vec<&str> = text.lines().collect();
        lines[10] = "{not json";
        let damaged = dir.0.join("damaged.rec");
        std::fs::write(&damaged, lines.join("\n") + "\n").expect("write");
        let out = dir.0.join("out");
        let written = write_report(&damaged, &out).expect("a report of what reads");
        let page = std::fs::read_to_string(&written.page).expect("page");
        assert!(page.contains("This recording is damaged"));
        assert!(page.contains("Line 11 is not a record"));

        let nothing = dir.0.join("nothing.rec");
        std::fs::write(&nothing, format!("{}\n{{garbage\n", lines[0])).expect("write");
        let err = write_report(&nothing, &out).expect_err("nothing readable");
        assert!(
            err.to_string()
                .contains("nothing in the recording is readable: line 2"),
            "{err}"
        );

        let future = dir.0.join("future.rec");
        std::fs::write(
            &future,
            "{\"type\":\"recording\",\"format\":\"profiler-recording\",\"version\":7}\n",
        )
        .expect("write");
        let err = write_report(&future, &out).expect_err("unknown version");
        assert!(
            err.to_string().contains("version 7 is not supported"),
            "{err}"
        );
    }

    #[test]
    fn an_unwritable_dir_fails_before_the_recording_is_read() {
        let dir = Dir::new("unwritable");
        std::fs::create_dir_all(&dir.0).expect("dir");
        let file = dir.0.join("a-file");
        std::fs::write(&file, b"").expect("write");
        // The recording does not exist either: the directory's error must come first.
        let err = write_report(&dir.0.join("missing.rec"), &file.join("out")).expect_err("refused");
        assert!(matches!(err, ReportError::OutputDir { .. }), "{err}");
        assert!(err.to_string().contains("-o DIR"), "{err}");
    }
}
