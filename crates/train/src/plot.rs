//! PNG plots: learning curves, a sweep's validation accuracy, and the
//! confusion matrix with class names on its axes.
//!
//! Drawn with plotters into a bitmap. Text goes through plotters' pure-Rust
//! `ab_glyph` path with a font compiled into the binary
//! (`assets/DejaVuSans-subset.ttf`, see `assets/README.md`), so plotting
//! needs no fontconfig, FreeType or installed fonts and looks the same on
//! every machine. Each image is drawn in memory, encoded as PNG and written
//! like every other output ([`write_atomic`]: temporary name, fsync, rename).
use std::error::Error as StdError;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use image::ImageEncoder;

use crate::atomic::write_atomic;
use crate::fit::History;
use crate::{Error, Result};

const FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
const FONT: &str = "sans-serif";

type DrawResult = std::result::Result<(), Box<dyn StdError>>;

/// Line colours, in order (colour-blind safe, Okabe–Ito).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

fn draw(
    path: &Path,
    size: (u32, u32),
    f: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult,
) -> Result<()> {
    static FONT_ONCE: Once = Once::new();
    FONT_ONCE.call_once(|| {
        // The bytes are a valid font (checked by the tests); failing would
        // only leave the plots without text.
        let _ = register_font(FONT, FontStyle::Normal, FONT_BYTES);
    });
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let plot_err = |e: Box<dyn StdError>| Error::Plot {
        path: path.into(),
        reason: e.to_string(),
    };
    let (w, h) = size;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(e.into()))?;
        f(&root).map_err(plot_err)?;
        root.present().map_err(|e| plot_err(e.into()))?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| plot_err(e.into()))?;
    write_atomic(path, &png)
}

fn range(values: impl Iterator<Item = f32>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v as f64), hi.max(v as f64))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    (lo - pad, hi + pad)
}

/// Where a chart's legend goes.
#[derive(Debug, Clone, Copy)]
enum Legend {
    None,
    Low,
    High,
}

/// Colour of series `i` of `n`: the fixed palette while it lasts, then
/// hues spread around the wheel so a large sweep keeps lines apart.
fn color(i: usize, n: usize) -> RGBColor {
    if n <= PALETTE.len() {
        return PALETTE[i];
    }
    let (r, g, b) = HSLColor(i as f64 / n as f64, 0.75, 0.42).rgb();
    RGBColor(r, g, b)
}

/// One line chart over epochs 1..=n.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    series: &[(String, &[f32])],
    legend: Legend,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let n = series
        .iter()
        .map(|(_, v)| v.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let (lo, hi) = range(series.iter().flat_map(|(_, v)| v.iter().copied()));
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5f64..n as f64 + 0.5, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_labels(n.min(12))
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .y_label_formatter(&|y| {
            if hi - lo > 0.5 {
                format!("{y:.2}")
            } else {
                format!("{y:.3}")
            }
        })
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (i, (name, values)) in series.iter().enumerate() {
        let color = color(i, series.len());
        let points: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(e, &v)| ((e + 1) as f64, v as f64))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    let position = match legend {
        Legend::None => return Ok(()),
        Legend::Low => SeriesLabelPosition::LowerRight,
        Legend::High => SeriesLabelPosition::UpperRight,
    };
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}

/// `curves.png`: loss (left) and accuracy (right), training and validation.
pub(crate) fn curves(path: &Path, h: &History, title: &str) -> Result<()> {
    draw(path, (1100, 440), |root| {
        let root = root.titled(title, (FONT, 18))?;
        let (left, right) = root.split_horizontally(550);
        panel(
            &left,
            "loss",
            &[
                ("train".into(), &h.loss),
                ("validation".into(), &h.val_loss),
            ],
            Legend::High,
        )?;
        panel(
            &right,
            "accuracy",
            &[
                ("train".into(), &h.accuracy),
                ("validation".into(), &h.val_accuracy),
            ],
            Legend::Low,
        )?;
        Ok(())
    })
}

/// `sweep.png`: validation accuracy per epoch of every configuration, the
/// legend beside the chart, ranked by best validation accuracy.
pub(crate) fn sweep(path: &Path, runs: &[(String, &History)]) -> Result<()> {
    let series: Vec<(String, &[f32])> = runs
        .iter()
        .map(|(n, h)| (n.clone(), h.val_accuracy.as_slice()))
        .collect();
    let best = |v: &[f32]| v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut ranked: Vec<usize> = (0..series.len()).collect();
    ranked.sort_by(|&a, &b| best(series[b].1).total_cmp(&best(series[a].1)));
    let longest = series
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(4) as u32;
    let legend_width = 90 + 8 * longest;
    let height = 520.max(70 + 20 * series.len() as u32);
    draw(path, (900 + legend_width, height), |root| {
        let (chart, legend) = root.split_horizontally(900);
        panel(&chart, "validation accuracy", &series, Legend::None)?;
        let style = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        legend.draw(&Text::new("best  configuration", (10, 40), style.clone()))?;
        for (row, &i) in ranked.iter().enumerate() {
            let y = 62 + 20 * row as i32;
            let c = color(i, series.len());
            legend.draw(&PathElement::new(vec![(10, y), (34, y)], c.stroke_width(3)))?;
            let label = format!("{:.4}  {}", best(series[i].1), series[i].0);
            legend.draw(&Text::new(label, (42, y), style.clone()))?;
        }
        Ok(())
    })
}

/// `confusion.png`: counts with rows = true class, columns = predicted,
/// each cell shaded by its share of the row.
pub(crate) fn confusion(
    path: &Path,
    classes: &[String],
    m: &[Vec<usize>],
    title: &str,
) -> Result<()> {
    let c = classes.len().max(1);
    let cell = if c > 20 { 28 } else { 56 };
    let longest = classes.iter().map(|s| s.chars().count()).max().unwrap_or(1) as i32;
    let label = (longest * 8 + 30).clamp(60, 260);
    let (x0, y0) = (label + 40, 60);
    let size = (
        (x0 + cell * c as i32 + 30) as u32,
        (y0 + cell * c as i32 + label + 40) as u32,
    );
    draw(path, size, |root| {
        let text = |size: u32| TextStyle::from((FONT, size).into_font()).color(&BLACK);
        let center = Pos::new(HPos::Center, VPos::Center);
        root.draw(&Text::new(
            title.to_string(),
            (size.0 as i32 / 2, 22),
            text(18).pos(center),
        ))?;
        for (i, row) in m.iter().enumerate() {
            let total: usize = row.iter().sum();
            for (j, &count) in row.iter().enumerate() {
                let share = if total == 0 {
                    0.0
                } else {
                    count as f64 / total as f64
                };
                let fill = RGBColor(
                    (255.0 - share * (255.0 - 8.0)) as u8,
                    (255.0 - share * (255.0 - 69.0)) as u8,
                    (255.0 - share * (255.0 - 148.0)) as u8,
                );
                let (x, y) = (x0 + cell * j as i32, y0 + cell * i as i32);
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    fill.filled(),
                ))?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    BLACK.mix(0.15),
                ))?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let style = text(if cell > 40 { 15 } else { 10 })
                    .color(&ink)
                    .pos(center);
                root.draw(&Text::new(
                    count.to_string(),
                    (x + cell / 2, y + cell / 2),
                    style,
                ))?;
            }
        }
        let right_mid = Pos::new(HPos::Right, VPos::Center);
        for (k, name) in classes.iter().enumerate() {
            let mid = cell * k as i32 + cell / 2;
            root.draw(&Text::new(
                name.clone(),
                (x0 - 8, y0 + mid),
                text(14).pos(right_mid),
            ))?;
            let down = text(14)
                .transform(FontTransform::Rotate90)
                .pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(
                name.clone(),
                (x0 + mid, y0 + cell * c as i32 + 8),
                down,
            ))?;
        }
        let bottom = y0 + cell * c as i32 + label + 20;
        root.draw(&Text::new(
            "predicted class",
            (x0 + cell * c as i32 / 2, bottom),
            text(16).pos(center),
        ))?;
        let up = text(16).transform(FontTransform::Rotate270).pos(center);
        root.draw(&Text::new("true class", (16, y0 + cell * c as i32 / 2), up))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn font_is_valid() {
        assert!(register_font("xfer-test", FontStyle::Normal, FONT_BYTES).is_ok());
    }

    #[test]
    fn plots_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let h = History {
            loss: vec![1.0, 0.6, 0.5],
            accuracy: vec![0.5, 0.7, 0.8],
            val_loss: vec![0.9, 0.7, 0.65],
            val_accuracy: vec![0.55, 0.66, 0.7],
        };
        curves(&dir.path().join("curves.png"), &h, "lr 0.01").unwrap();
        sweep(
            &dir.path().join("sweep.png"),
            &[("a".into(), &h), ("b".into(), &h)],
        )
        .unwrap();
        let classes: Vec<String> = ["dress", "hat", "longsleeve"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = vec![vec![5, 1, 0], vec![0, 3, 2], vec![1, 0, 7]];
        confusion(&dir.path().join("confusion.png"), &classes, &m, "test").unwrap();
        for f in ["curves.png", "sweep.png", "confusion.png"] {
            let bytes = std::fs::read(dir.path().join(f)).unwrap();
            assert_eq!(&bytes[1..4], b"PNG", "{f}");
        }
        let single = History {
            loss: vec![1.0],
            accuracy: vec![0.5],
            val_loss: vec![1.0],
            val_accuracy: vec![0.5],
        };
        curves(&dir.path().join("one.png"), &single, "one epoch").unwrap();
        // Nothing but the plots: no temporary file left behind.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["confusion.png", "curves.png", "one.png", "sweep.png"]
        );
        let img = image::open(dir.path().join("one.png")).unwrap();
        assert!(img.width() > 100 && img.height() > 100);
    }
}
