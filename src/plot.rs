//! PNG figures with plotters: slice maps with a colour bar, scatter plots with an identity line, line
//! plots. Files are written atomically. The font (DejaVu Sans, see assets/fonts) is embedded so plots
//! render identically on machines without system fonts.

use crate::error::{Error, Result};
use ndarray::ArrayView2;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn ensure_font() {
    REGISTER.call_once(|| {
        // The bytes are a valid TrueType font shipped with the crate; failure would be a build error.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::io(path, std::io::Error::other(format!("plotting failed: {e}")))
}

/// Draw into a temporary `.png` beside `path`, then rename it into place (removed on error).
fn atomic_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(
        &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    ) -> std::result::Result<(), String>,
) -> Result<()> {
    ensure_font();
    crate::io::write_atomic_via_path(path, ".png", |tmp| {
        let root = BitMapBackend::new(tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        draw(&root).map_err(|e| plot_err(path, e))?;
        root.present().map_err(|e| plot_err(path, e))
    })
}

/// A 2-D map (rows = y, columns = x; row 0 at the bottom) with a colour bar. `pixel_mm` is the voxel
/// size (y, x) for the axis labels; `range` fixes the colour scale (default min..max of the map).
pub fn map_png(
    path: &Path,
    map: ArrayView2<'_, f64>,
    title: &str,
    unit: &str,
    pixel_mm: (f64, f64),
    range: Option<(f64, f64)>,
) -> Result<()> {
    let (ny, nx) = (map.shape()[0], map.shape()[1]);
    let (lo, hi) = range.unwrap_or_else(|| {
        let lo = map.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = map.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    });
    let hi = if hi > lo { hi } else { lo + 1.0 };
    let (w_mm, h_mm) = (nx as f64 * pixel_mm.1, ny as f64 * pixel_mm.0);
    let width = 640u32;
    let height = ((width as f64 - 140.0) * h_mm / w_mm + 90.0).clamp(240.0, 900.0) as u32;
    atomic_png(path, (width, height), |root| {
        let (main, bar) = root.split_horizontally(width - 110);
        let mut chart = ChartBuilder::on(&main)
            .caption(title, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(44)
            .build_cartesian_2d(0.0..w_mm, 0.0..h_mm)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("x (mm)")
            .y_desc("y (mm)")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(map.indexed_iter().map(|((y, x), v)| {
                let c = ViridisRGB::get_color_normalized(*v, lo, hi);
                let (x0, y0) = (x as f64 * pixel_mm.1, y as f64 * pixel_mm.0);
                Rectangle::new([(x0, y0), (x0 + pixel_mm.1, y0 + pixel_mm.0)], c.filled())
            }))
            .map_err(|e| e.to_string())?;
        let mut cb = ChartBuilder::on(&bar)
            .margin_top(36)
            .margin_bottom(40)
            .margin_right(8)
            .y_label_area_size(60)
            .caption(unit, ("sans-serif", 14))
            .build_cartesian_2d(0.0..1.0, lo..hi)
            .map_err(|e| e.to_string())?;
        cb.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        let steps = 100;
        cb.draw_series((0..steps).map(|k| {
            let a = lo + (hi - lo) * k as f64 / steps as f64;
            let b = lo + (hi - lo) * (k + 1) as f64 / steps as f64;
            Rectangle::new(
                [(0.0, a), (1.0, b)],
                ViridisRGB::get_color_normalized(a, lo, hi).filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Scatter of (x, y) points with the identity line y = x and optional lines y = k x (label, k).
pub fn scatter_png(
    path: &Path,
    points: &[(f64, f64)],
    title: &str,
    x_label: &str,
    y_label: &str,
    extra_lines: &[(&str, f64)],
) -> Result<()> {
    let max = points.iter().flat_map(|p| [p.0, p.1]).fold(0.0, f64::max) * 1.05;
    let max = if max > 0.0 { max } else { 1.0 };
    atomic_png(path, (560, 520), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..max, 0.0..max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()
            .map_err(|e| e.to_string())?;
        // Points first, so that the reference lines stay visible over dense clouds.
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Circle::new(*p, 2, BLUE.mix(0.5).filled())),
            )
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (max, max)],
                BLACK.stroke_width(1),
            ))
            .map_err(|e| e.to_string())?
            .label("y = x")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
        for (i, (label, k)) in extra_lines.iter().enumerate() {
            if !(k.is_finite() && *k > 0.0) {
                continue;
            }
            let color = Palette99::pick(i + 3).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    // End on the frame: plotters does not clip a segment that leaves the chart.
                    [(0.0, 0.0), (max.min(max / k), (max * k).min(max))],
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(*label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Line plot of named series of (x, y) points; `log_y` plots log10(y) (values <= 0 are skipped).
pub fn lines_png(
    path: &Path,
    series: &[(&str, Vec<(f64, f64)>)],
    title: &str,
    x_label: &str,
    y_label: &str,
    log_y: bool,
) -> Result<()> {
    let tr = |v: f64| if log_y { v.log10() } else { v };
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.1.iter().cloned())
        .filter(|p| p.0.is_finite() && p.1.is_finite() && (!log_y || p.1 > 0.0))
        .collect();
    if pts.is_empty() {
        return Err(Error::invalid(
            "line plot",
            "at least one finite point",
            "none",
        ));
    }
    let (x0, x1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let (y0, y1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(tr(p.1)), b.max(tr(p.1)))
        });
    let (x1, y1) = (
        if x1 > x0 { x1 } else { x0 + 1.0 },
        if y1 > y0 { y1 } else { y0 + 1.0 },
    );
    let pad = 0.05 * (y1 - y0);
    let y_desc = if log_y {
        format!("log10 {y_label}")
    } else {
        y_label.to_string()
    };
    atomic_png(path, (640, 420), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_desc.as_str())
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, s)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let data: Vec<(f64, f64)> = s
                .iter()
                .filter(|p| !log_y || p.1 > 0.0)
                .map(|p| (p.0, tr(p.1)))
                .collect();
            chart
                .draw_series(LineSeries::new(data, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Histogram of `values` in `bins` equal bins.
pub fn histogram_png(
    path: &Path,
    values: &[f64],
    bins: usize,
    title: &str,
    x_label: &str,
) -> Result<()> {
    if values.is_empty() || bins == 0 {
        return Err(Error::invalid(
            "histogram",
            "at least one value and one bin",
            format!("{} values, {bins} bins", values.len()),
        ));
    }
    let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let hi = if hi > lo { hi } else { lo + 1.0 };
    let w = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for v in values {
        counts[(((v - lo) / w) as usize).min(bins - 1)] += 1;
    }
    let top = *counts.iter().max().unwrap_or(&1) as f64 * 1.1;
    atomic_png(path, (560, 400), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(52)
            .build_cartesian_2d(lo..hi, 0.0..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("count")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, c)| {
                let x0 = lo + i as f64 * w;
                Rectangle::new([(x0, 0.0), (x0 + w, *c as f64)], BLUE.mix(0.6).filled())
            }))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pngs_that_decode() {
        let dir = tempfile::tempdir().unwrap();
        let m = ndarray::Array2::from_shape_fn((20, 30), |(y, x)| (x + y) as f64);
        let p = dir.path().join("map.png");
        map_png(&p, m.view(), "test map", "W/kg", (5.0, 5.0), None).unwrap();
        let s = dir.path().join("s.png");
        scatter_png(
            &s,
            &[(1.0, 1.2), (2.0, 1.9)],
            "t",
            "x",
            "y",
            &[("SF 1.4", 1.4)],
        )
        .unwrap();
        let h = dir.path().join("h.png");
        histogram_png(&h, &[1.0, 2.0, 2.5, 3.0], 3, "t", "x").unwrap();
        for f in [p, s, h] {
            let bytes = std::fs::read(&f).unwrap();
            assert_eq!(&bytes[1..4], b"PNG", "{f:?}");
        }
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }
}
