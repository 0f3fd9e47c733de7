//! `profiler report FILE [-o DIR]`: the HTML report of a recording (the work is in the
//! `reports` crate; this is the command line around it).
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use reports::recording::Damage;

use crate::cli::ReportArgs;

/// `leak.rec` → `leak-report`, in the current directory.
fn default_dir(recording: &Path) -> PathBuf {
    let stem = recording
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty() && s != "." && s != "..")
        .unwrap_or_else(|| "recording".into());
    PathBuf::from(format!("{stem}-report"))
}

/// Runs `profiler report`.
pub fn run(args: ReportArgs) -> Result<()> {
    let dir = args
        .output
        .clone()
        .unwrap_or_else(|| default_dir(&args.recording));
    let written = reports::write_report(&args.recording, &dir)
        // Every error names the file it is about.
        .context("no report written")?;
    match &written.damage {
        Some(Damage::BadLine { line, reason }) => eprintln!(
            "warning: {} is damaged: line {line} is not a record ({reason}); the report shows \
             what comes before it",
            args.recording.display()
        ),
        Some(Damage::CutShort { line }) => eprintln!(
            "note: the last line ({line}) of {} was cut short and is left out",
            args.recording.display()
        ),
        None => {}
    }
    println!(
        "report: {} ({} container{}, {} chart files)",
        written.page.display(),
        written.containers,
        if written.containers == 1 { "" } else { "s" },
        written.charts.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dir_is_the_recordings_name() {
        assert_eq!(
            default_dir(Path::new("/var/tmp/leak.rec")),
            PathBuf::from("leak-report")
        );
        assert_eq!(default_dir(Path::new("run")), PathBuf::from("run-report"));
        assert_eq!(
            default_dir(Path::new("/")),
            PathBuf::from("recording-report")
        );
    }
}
