//! The forecast benchmark's table: one row per run of a scenario and, with several runs, a row
//! of medians with min..max. Pure: it renders text from evaluations.
use super::{
    evaluate::{Evaluation, Goal, Verdict},
    median, spread,
};

/// One run of one scenario, evaluated.
pub(super) struct Row {
    pub number: u8,
    pub slug: &'static str,
    pub run: usize,
    pub expect_oom: bool,
    pub evaluation: Evaluation,
    pub verdict: Verdict,
}

/// A numeric column: its header, how to read it from a run, how to print it.
struct Figure {
    header: &'static str,
    read: fn(&Evaluation) -> Option<f64>,
    unit: Unit,
    /// What an empty cell says when the profiler has a forecaster and the run had an OOM kill.
    missing: &'static str,
}

#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Percent,
    Count,
}

impl Unit {
    fn show(self, value: f64) -> String {
        match self {
            Unit::Seconds => format!("{value:.1} s"),
            Unit::Percent => format!("{:.0} %", 100.0 * value),
            Unit::Count => format!("{value:.0}"),
        }
    }

    fn bare(self, value: f64) -> String {
        match self {
            Unit::Seconds => format!("{value:.1}"),
            Unit::Percent => format!("{:.0}", 100.0 * value),
            Unit::Count => format!("{value:.0}"),
        }
    }
}

fn count(n: usize) -> Option<f64> {
    Some(n as f64)
}

/// The figures, in table order.
const FIGURES: [Figure; 12] = [
    Figure {
        header: "growth→kill",
        read: |e| e.growth_to_kill,
        unit: Unit::Seconds,
        missing: "–",
    },
    Figure {
        header: "ideal lead",
        read: |e| e.ideal_lead,
        unit: Unit::Seconds,
        missing: "–",
    },
    Figure {
        header: "profiler lead",
        read: |e| e.profiler.as_ref().and_then(|p| p.lead),
        unit: Unit::Seconds,
        missing: "none",
    },
    Figure {
        header: "% ideal",
        read: |e| {
            let lead = e.profiler.as_ref()?.lead?;
            e.ideal_lead.filter(|&i| i > 0.0).map(|i| lead / i)
        },
        unit: Unit::Percent,
        missing: "–",
    },
    Figure {
        header: "ETA err",
        read: |e| e.profiler.as_ref().and_then(|p| p.eta_error),
        unit: Unit::Percent,
        missing: "–",
    },
    Figure {
        header: "false",
        read: |e| e.profiler.as_ref().and_then(|p| count(p.false_warnings)),
        unit: Unit::Count,
        missing: "–",
    },
    Figure {
        header: "pred_linear lead",
        read: |e| e.predict_linear.lead,
        unit: Unit::Seconds,
        missing: "none",
    },
    Figure {
        header: "false",
        read: |e| count(e.predict_linear.false_warnings),
        unit: Unit::Count,
        missing: "–",
    },
    Figure {
        header: ">90% lead",
        read: |e| e.above_fraction.lead,
        unit: Unit::Seconds,
        missing: "none",
    },
    Figure {
        header: "false",
        read: |e| count(e.above_fraction.false_warnings),
        unit: Unit::Count,
        missing: "–",
    },
    Figure {
        header: "peak ws",
        read: |e| e.peak_working_set,
        unit: Unit::Percent,
        missing: "–",
    },
    Figure {
        header: "samples",
        read: |e| count(e.samples),
        unit: Unit::Count,
        missing: "–",
    },
];

/// Whether an empty cell of `figure` in this run means "did not happen" (`missing`) rather
/// than "does not apply" (`–`): leads only apply to runs with a kill, the profiler's figures
/// only to a profiler with a forecaster.
fn empty_cell(figure: &Figure, evaluation: &Evaluation) -> &'static str {
    let profiler_column = figure.header == "profiler lead";
    if evaluation.kill.is_none() || (profiler_column && evaluation.profiler.is_none()) {
        "–"
    } else {
        figure.missing
    }
}

fn verdict_cell(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Met => "met".to_owned(),
        Verdict::Missed(why) => format!("NO: {why}"),
        Verdict::Unknown(why) => format!("? ({why})"),
        Verdict::Report => "(report only)".to_owned(),
    }
}

/// The table, rows in the order given; with several runs of a scenario, a row of medians
/// (`median [min..max]`) follows its runs.
pub(super) fn render(rows: &[Row]) -> String {
    let mut header = vec!["#", "scenario", "run", "OOM"];
    header.extend(FIGURES.iter().map(|f| f.header));
    header.push("goal met?");
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];

    let mut numbers: Vec<u8> = rows.iter().map(|r| r.number).collect();
    numbers.sort_unstable();
    numbers.dedup();
    for number in numbers {
        let runs: Vec<&Row> = rows.iter().filter(|r| r.number == number).collect();
        for row in &runs {
            let e = &row.evaluation;
            let oom = match (e.kill.is_some(), row.expect_oom) {
                (true, true) => "yes",
                (false, false) => "no",
                (true, false) => "yes (!)",
                (false, true) => "no (!)",
            };
            let mut cells = vec![
                number.to_string(),
                row.slug.to_owned(),
                row.run.to_string(),
                oom.to_owned(),
            ];
            for figure in &FIGURES {
                cells.push(match (figure.read)(e) {
                    Some(value) => figure.unit.show(value),
                    None => empty_cell(figure, e).to_owned(),
                });
            }
            cells.push(verdict_cell(&row.verdict));
            table.push(cells);
        }
        if runs.len() > 1 {
            table.push(summary_row(&runs));
        }
    }
    align(&table)
}

/// Medians and min..max over the runs of one scenario.
fn summary_row(runs: &[&Row]) -> Vec<String> {
    let first = runs[0];
    let kills = runs.iter().filter(|r| r.evaluation.kill.is_some()).count();
    let mut cells = vec![
        first.number.to_string(),
        first.slug.to_owned(),
        "median".to_owned(),
        format!("{kills}/{} yes", runs.len()),
    ];
    for figure in &FIGURES {
        let values: Vec<f64> = runs
            .iter()
            .filter_map(|r| (figure.read)(&r.evaluation))
            .collect();
        cells.push(if values.is_empty() {
            empty_cell(figure, &first.evaluation).to_owned()
        } else {
            let (min, max) = spread(&values);
            let mut cell = figure.unit.show(median(&values));
            if values.len() > 1 {
                cell.push_str(&format!(
                    " [{}..{}]",
                    figure.unit.bare(min),
                    figure.unit.bare(max)
                ));
            }
            if values.len() < runs.len() {
                cell.push_str(&format!(" ({}/{} runs)", values.len(), runs.len()));
            }
            cell
        });
    }
    let met = runs.iter().filter(|r| r.verdict == Verdict::Met).count();
    cells.push(match first.verdict {
        Verdict::Report => "(report only)".to_owned(),
        Verdict::Unknown(_) if met == 0 => verdict_cell(&first.verdict),
        _ => format!("{met}/{} met", runs.len()),
    });
    cells
}

/// The goals line under the table: the scenarios of each goal and what it asks, e.g.
/// `goals: 4, 5: no profiler warning at all; 7: the kill is recorded.`
pub(super) fn goals(scenarios: impl IntoIterator<Item = (u8, Goal)>) -> String {
    let scenarios: Vec<(u8, Goal)> = scenarios.into_iter().collect();
    let parts: Vec<String> = [
        Goal::NoWarning,
        Goal::EarlyAndAccurate,
        Goal::KillCaptured,
        Goal::ReportOnly,
    ]
    .into_iter()
    .filter_map(|goal| {
        let numbers: Vec<String> = scenarios
            .iter()
            .filter(|(_, g)| *g == goal)
            .map(|(n, _)| n.to_string())
            .collect();
        (!numbers.is_empty()).then(|| format!("{}: {}", numbers.join(", "), goal.describe()))
    })
    .collect();
    format!("goals: {}.", parts.join("; "))
}

/// Left-aligned text columns, two spaces apart, a rule under the header.
fn align(table: &[Vec<String>]) -> String {
    let columns = table.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            table
                .iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (index, row) in table.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if index == 0 {
            let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::evaluate::{Detection, Kill};

    fn row(run: usize, lead: Option<f64>, forecaster: bool) -> Row {
        let evaluation = Evaluation {
            kill: Some(Kill {
                ts: 100.0,
                pid: 1,
                comm: "x".to_owned(),
            }),
            kills: 1,
            growth_start: Some(30.0),
            growth_to_kill: Some(70.0),
            ideal_lead: Some(60.0),
            profiler: forecaster.then(|| Detection {
                lead,
                eta_error: lead.map(|_| 0.1),
                false_warnings: 0,
                warnings: 1,
            }),
            predict_linear: Detection {
                lead: Some(40.0),
                ..Detection::default()
            },
            peak_working_set: Some(0.99),
            samples: 100,
            ..Evaluation::default()
        };
        Row {
            number: 1,
            slug: "linear-leak",
            run,
            expect_oom: true,
            evaluation,
            verdict: Verdict::Met,
        }
    }

    /// A table line's cells (they are two or more spaces apart; none holds two spaces).
    fn cells(line: &str) -> Vec<&str> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    }

    #[test]
    fn a_run_without_a_forecaster_shows_dashes() {
        let text = render(&[row(1, None, false)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("#  scenario"), "{text}");
        assert_eq!(
            cells(lines[2])[..10],
            [
                "1",
                "linear-leak",
                "1",
                "yes",
                "70.0 s",
                "60.0 s",
                "–",
                "–",
                "–",
                "–"
            ],
            "{text}"
        );
        assert_eq!(cells(lines[2])[10..13], ["40.0 s", "0", "none"], "{text}");
    }

    #[test]
    fn the_goals_line_groups_the_scenarios_by_goal() {
        use crate::bench::scenario::SCENARIOS;
        let all = goals(SCENARIOS.iter().map(|s| (s.number, s.goal)));
        assert_eq!(
            all,
            "goals: 4, 5, 12: no profiler warning at all; 1, 2, 3, 6, 8, 10, 11: lead ≥ \
             predict_linear's and ≥ 70 % of ideal, ETA error ≤ 25 %; 7: the kill is recorded; \
             9: figures only."
        );
        assert_eq!(
            goals([(12, Goal::NoWarning)]),
            "goals: 12: no profiler warning at all."
        );
    }

    #[test]
    fn several_runs_get_a_median_row() {
        let text = render(&[
            row(1, Some(50.0), true),
            row(2, Some(54.0), true),
            row(3, None, true),
        ]);
        let last = text.lines().last().expect("rows");
        assert!(last.contains("median"), "{text}");
        assert!(last.contains("3/3 yes"), "{text}");
        assert!(last.contains("52.0 s [50.0..54.0] (2/3 runs)"), "{text}");
        assert!(last.contains("3/3 met"), "{text}");
        assert!(
            text.contains("none"),
            "a run without a warning says none: {text}"
        );
    }
}
