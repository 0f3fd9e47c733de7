//! PNG charts of one container, drawn with plotters into memory and encoded with `png`.
//!
//! Text is drawn with DejaVu Sans, bundled in the binary: a node or a CI runner without any
//! fonts still gets labelled charts, and nothing depends on fontconfig.
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use thiserror::Error;

use crate::recommend::quantile;
use crate::timeline::{Container, Point};

/// Size of the memory-over-time chart, pixels.
pub const MEMORY_SIZE: (u32, u32) = (1200, 520);
/// Size of the percentile chart, pixels.
pub const PERCENTILES_SIZE: (u32, u32) = (1200, 360);

/// DejaVu Sans (licence in `reports/fonts/DejaVuSans.LICENSE`).
static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

const USAGE: RGBColor = RGBColor(31, 119, 180);
const WORKING_SET: RGBColor = RGBColor(44, 160, 44);
const UNRECLAIMABLE: RGBColor = RGBColor(214, 39, 40);
const LIMIT: RGBColor = RGBColor(40, 40, 40);
const WARNING: RGBColor = RGBColor(230, 145, 0);
const CRITICAL: RGBColor = RGBColor(200, 0, 120);
const KILL: RGBColor = RGBColor(160, 0, 0);

const MIB: f64 = 1024.0 * 1024.0;

/// An encoded PNG image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Png {
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// The PNG file.
    pub bytes: Vec<u8>,
}

/// Why a chart could not be drawn.
#[derive(Debug, Error)]
pub enum ChartError {
    /// The bundled font did not load (a corrupt build).
    #[error("the bundled chart font does not load")]
    Font,
    /// plotters failed.
    #[error("drawing the chart failed: {0}")]
    Draw(String),
    /// The PNG encoder failed.
    #[error("encoding the chart as PNG failed")]
    Encode(#[from] png::EncodingError),
}

fn draw_error(e: impl std::fmt::Display) -> ChartError {
    ChartError::Draw(e.to_string())
}

fn font_ready() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(ChartError::Font)
    }
}

/// Draws into an RGB buffer of `size` with `draw`, then encodes it.
fn render(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), ChartError>,
) -> Result<Png, ChartError> {
    font_ready()?;
    let (width, height) = size;
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        draw(&root)?;
        root.present().map_err(draw_error)?;
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // Charts are mostly flat colour: adaptive filtering makes them ~7x smaller. `Best`
        // compression saved 1.5 % more and doubled the time of a 100-container report.
        encoder.set_compression(png::Compression::Default);
        encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&rgb)?;
        writer.finish()?;
    }
    Ok(Png {
        width,
        height,
        bytes,
    })
}

/// A label beside a vertical mark at `x`: `pad` to its left, ending there (`to_the_left`, for
/// marks in the right half, so the text stays inside the chart), or `pad` to its right.
fn beside(
    text: String,
    (x, y): (f64, f64),
    pad: f64,
    to_the_left: bool,
    (size, colour): (u32, RGBColor),
) -> Text<'static, (f64, f64), String> {
    let (x, h) = if to_the_left {
        (x - pad, HPos::Right)
    } else {
        (x + pad, HPos::Left)
    };
    let style = (FAMILY, size)
        .into_font()
        .color(&colour)
        .pos(Pos::new(h, VPos::Top));
    Text::new(text, (x, y), style)
}

/// `12:05` or `1:02:05` for seconds since the start.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// At most about two points per pixel column: the lowest and the highest of each column, in
/// time order, so peaks survive the thinning of a long recording.
fn thin(points: &[(f64, f64)], columns: usize) -> Vec<(f64, f64)> {
    if points.len() <= columns * 2 || columns == 0 {
        return points.to_vec();
    }
    let (first, last) = (points[0].0, points[points.len() - 1].0);
    let width = ((last - first) / columns as f64).max(f64::MIN_POSITIVE);
    let mut out = Vec::with_capacity(columns * 2);
    let mut bucket: Vec<(f64, f64)> = Vec::new();
    let mut current = 0usize;
    let flush = |bucket: &mut Vec<(f64, f64)>, out: &mut Vec<(f64, f64)>| {
        let low = bucket.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1));
        let high = bucket.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(low), Some(high)) = (low, high) {
            if low.0 <= high.0 {
                out.extend([low, high]);
            } else {
                out.extend([high, low]);
            }
        }
        bucket.clear();
    };
    for &p in points {
        let column = (((p.0 - first) / width) as usize).min(columns - 1);
        if column != current {
            flush(&mut bucket, &mut out);
            current = column;
        }
        bucket.push(p);
    }
    flush(&mut bucket, &mut out);
    out
}

fn series(points: &[Point], value: impl Fn(&Point) -> Option<u64>) -> Vec<(f64, f64)> {
    points
        .iter()
        .filter_map(|p| value(p).map(|v| (p.t, v as f64 / MIB)))
        .collect()
}

/// Usage, working set and unreclaimable memory against the limit over time, with kills,
/// warnings and the forecast given at each warning drawn as a projection to the limit.
pub fn memory_chart(container: &Container, title: &str) -> Result<Png, ChartError> {
    let points = &container.points;
    let end = points.last().map_or(1.0, |p| p.t);
    let kill_end = container.kills.iter().map(|k| k.t).fold(end, f64::max);
    // Forecasts reach past the end of the recording; show them, up to a bound.
    let projected_end = container
        .warnings
        .iter()
        .filter_map(|w| w.warning.eta_seconds.map(|eta| w.t + eta))
        .fold(kill_end, f64::max)
        .min(kill_end + (kill_end * 0.25).max(30.0));
    let start = points.first().map_or(0.0, |p| p.t);
    let end = projected_end.max(start + 1.0);
    // A little room after the last mark, so a kill at the very end stays visible.
    let x_range = start..end + (end - start) * 0.02;
    let top = points
        .iter()
        .map(|p| {
            p.usage
                .max(p.limit.unwrap_or(0))
                .max(p.unreclaimable.unwrap_or(0))
        })
        .max()
        .unwrap_or(0) as f64
        / MIB;
    // The top tenth stays clear of the data (nothing is above `top`): labels go there.
    let y_range = 0.0..(top * 1.12).max(1.0);
    let columns = MEMORY_SIZE.0 as usize;

    render(MEMORY_SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range.clone(), y_range.clone())
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc("time since the recording started")
            .y_desc("MiB")
            .x_label_formatter(&|t| clock(*t))
            .label_style((FAMILY, 14))
            .draw()
            .map_err(draw_error)?;

        let limit = series(points, |p| p.limit);
        chart
            .draw_series(DashedLineSeries::new(
                thin(&limit, columns),
                8,
                6,
                LIMIT.stroke_width(2),
            ))
            .map_err(draw_error)?
            .label("limit")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], LIMIT.stroke_width(2)));
        // Widest first: where the three are equal (an anonymous leak), all three still show.
        for (name, colour, width, value) in [
            (
                "usage",
                USAGE,
                7,
                (|p: &Point| Some(p.usage)) as fn(&Point) -> Option<u64>,
            ),
            ("working set", WORKING_SET, 4, |p: &Point| {
                Some(p.working_set)
            }),
            ("unreclaimable", UNRECLAIMABLE, 2, |p: &Point| {
                p.unreclaimable
            }),
        ] {
            let data = thin(&series(points, value), columns);
            chart
                .draw_series(LineSeries::new(data, colour.stroke_width(width)))
                .map_err(draw_error)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(width))
                });
        }
        // Legend entries for the marks drawn below.
        for (name, colour) in [("forecast at a warning", WARNING), ("OOM kill", KILL)] {
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), u32>>())
                .map_err(draw_error)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(3))
                });
        }
        let x_mid = (x_range.start + x_range.end) / 2.0;
        let x_pad = (x_range.end - x_range.start) * 0.004;

        let y_top = y_range.end;
        for mark in &container.warnings {
            let colour = match mark.warning.level.as_str() {
                "critical" => CRITICAL,
                "cleared" => WORKING_SET,
                _ => WARNING,
            };
            chart
                .draw_series(DashedLineSeries::new(
                    [(mark.t, 0.0), (mark.t, y_top)],
                    4,
                    4,
                    colour.stroke_width(1),
                ))
                .map_err(draw_error)?;
            chart
                .draw_series([beside(
                    mark.warning.level.clone(),
                    (mark.t, y_top * 0.995),
                    x_pad,
                    mark.t > x_mid,
                    (13, colour),
                )])
                .map_err(draw_error)?;
            // The forecast at the warning: from the unreclaimable memory then to the limit at
            // the predicted time of the kill.
            if let (Some(eta), Some(from), Some(limit)) = (
                mark.warning.eta_seconds,
                mark.warning.unreclaimable_bytes,
                mark.warning.limit_bytes,
            ) {
                chart
                    .draw_series(DashedLineSeries::new(
                        [
                            (mark.t, from as f64 / MIB),
                            (mark.t + eta, limit as f64 / MIB),
                        ],
                        10,
                        5,
                        colour.stroke_width(3),
                    ))
                    .map_err(draw_error)?;
                chart
                    .draw_series([Circle::new(
                        (mark.t + eta, limit as f64 / MIB),
                        5,
                        colour.filled(),
                    )])
                    .map_err(draw_error)?;
            }
        }

        for kill in &container.kills {
            chart
                .draw_series(LineSeries::new(
                    [(kill.t, 0.0), (kill.t, y_top)],
                    KILL.stroke_width(3),
                ))
                .map_err(draw_error)?;
            let label = format!("OOM kill: {} ({})", kill.event.comm, kill.event.pid);
            chart
                .draw_series([beside(
                    label,
                    (kill.t, y_top * 0.96),
                    x_pad,
                    kill.t > x_mid,
                    (14, KILL),
                )])
                .map_err(draw_error)?;
        }

        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FAMILY, 14))
            .draw()
            .map_err(draw_error)?;
        Ok(())
    })
}

/// How often each level of the working set was seen: a histogram in MiB buckets with the
/// p50, p95 and p99 and the limit marked.
pub fn percentile_chart(container: &Container, title: &str) -> Result<Png, ChartError> {
    let values: Vec<u64> = container.points.iter().map(|p| p.working_set).collect();
    let limit = container.points.iter().filter_map(|p| p.limit).max();
    let high = values
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(limit.unwrap_or(0)) as f64
        / MIB;
    let high = (high * 1.05).max(1.0);
    const BUCKETS: usize = 60;
    let bucket = high / BUCKETS as f64;
    let mut counts = [0u64; BUCKETS];
    for &v in &values {
        let i = ((v as f64 / MIB / bucket) as usize).min(BUCKETS - 1);
        counts[i] += 1;
    }
    let total = values.len().max(1) as f64;
    let shares: Vec<f64> = counts.iter().map(|&c| c as f64 * 100.0 / total).collect();
    let top = shares.iter().copied().fold(1.0, f64::max) * 1.15;

    render(PERCENTILES_SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..high, 0.0..top)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc("working set, MiB")
            .y_desc("% of samples")
            .label_style((FAMILY, 14))
            .draw()
            .map_err(draw_error)?;
        chart
            .draw_series(
                shares
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| **s > 0.0)
                    .map(|(i, s)| {
                        let x = i as f64 * bucket;
                        Rectangle::new(
                            [(x, 0.0), (x + bucket * 0.9, *s)],
                            WORKING_SET.mix(0.8).filled(),
                        )
                    }),
            )
            .map_err(draw_error)?;
        let marks = [
            ("p50", quantile(&values, 0.50), USAGE),
            ("p95", quantile(&values, 0.95), WARNING),
            ("p99", quantile(&values, 0.99), UNRECLAIMABLE),
            ("limit", limit, LIMIT),
        ];
        for (i, (name, value, colour)) in marks.into_iter().enumerate() {
            let Some(value) = value else { continue };
            let x = value as f64 / MIB;
            chart
                .draw_series(LineSeries::new(
                    [(x, 0.0), (x, top)],
                    colour.stroke_width(2),
                ))
                .map_err(draw_error)?;
            chart
                .draw_series([beside(
                    format!("{name} {x:.0} MiB"),
                    (x, top * (0.95 - 0.08 * i as f64)),
                    high * 0.004,
                    x > high / 2.0,
                    (14, colour),
                )])
                .map_err(draw_error)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_labels() {
        assert_eq!(clock(0.0), "0:00");
        assert_eq!(clock(65.4), "1:05");
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(clock(-3.0), "0:00");
    }

    #[test]
    fn thinning_keeps_the_extremes_in_time_order() {
        let points: Vec<(f64, f64)> = (0..10_000)
            .map(|i| (i as f64, if i == 5_000 { 1e6 } else { (i % 7) as f64 }))
            .collect();
        let thinned = thin(&points, 100);
        assert!(thinned.len() <= 200, "{}", thinned.len());
        assert!(thinned.contains(&(5_000.0, 1e6)));
        assert!(thinned.windows(2).all(|p| p[0].0 <= p[1].0));
        assert_eq!(thin(&points[..50], 100), points[..50].to_vec());
    }
}
