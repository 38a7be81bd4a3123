//! The plots, as SVG through plotters (no font feature: text is written as
//! SVG text and sized by plotters' built-in estimate, so nothing needs
//! fontconfig or a font file).

use std::path::Path;

use plotters::prelude::*;

use crate::{Point, Results};

/// The plot files and their titles.
pub const FILES: [(&str, &str); 3] = [
    ("w1-latency.svg", "W1: round-trip latency distribution"),
    (
        "w2-throughput.svg",
        "W2: streaming throughput against message size",
    ),
    (
        "w3-throughput.svg",
        "W3: streaming throughput against message size",
    ),
];

const W: u32 = 960;
const H: u32 = 600;

fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 12] = [
        RGBColor(0, 0, 0),
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(100, 100, 255),
    ];
    C[i % C.len()]
}

fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v
        .filter(|x| *x > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
    if lo.is_finite() {
        (lo / 1.5, hi * 1.5)
    } else {
        (1.0, 10.0)
    }
}

/// W1: the fraction of round trips at or below each latency (log scale).
fn latency(res: &Results, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let (lo, hi) = bounds(
        res.latencies
            .iter()
            .flat_map(|e| e.1.iter().map(|&x| x as f64)),
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "W1: 8-byte ping-pong round trip, cumulative distribution",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("round trip (ns, log scale)")
        .y_desc("fraction of round trips")
        .draw()?;
    for (i, (name, v)) in res.latencies.iter().enumerate() {
        let mut s = v.clone();
        s.sort_unstable();
        let n = s.len();
        let pts: Vec<(f64, f64)> = (0..=400)
            .map(|k| {
                let q = k as f64 / 400.0;
                let idx = ((q * (n - 1) as f64) as usize).min(n - 1);
                ((s[idx] as f64).max(lo), q)
            })
            .collect();
        let c = color(i);
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Throughput against message size, one line per series (log-log).
fn sweep(
    points: &[Point],
    title: &str,
    y_desc: &str,
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let (xlo, xhi) = bounds(points.iter().map(|p| p.size as f64));
    let (ylo, yhi) = bounds(points.iter().map(|p| p.value));
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((xlo..xhi).log_scale(), (ylo..yhi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("message size (bytes, log scale)")
        .y_desc(y_desc)
        .draw()?;
    let mut names: Vec<&str> = Vec::new();
    for p in points {
        if !names.contains(&p.series.as_str()) {
            names.push(&p.series);
        }
    }
    for (i, name) in names.iter().enumerate() {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.series == *name && p.value > 0.0)
            .map(|p| (p.size as f64, p.value))
            .collect();
        let c = color(i);
        let dashed = name.ends_with("/loan");
        let style = if dashed {
            c.stroke_width(1)
        } else {
            c.stroke_width(2)
        };
        chart
            .draw_series(LineSeries::new(pts.clone(), style))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

pub fn draw(res: &Results, dir: &Path) {
    let r = latency(res, &dir.join(FILES[0].0))
        .and_then(|_| {
            sweep(
                &res.w2_sweep,
                "W2: streaming, one producer and one consumer process",
                "messages/s (log scale)",
                &dir.join(FILES[1].0),
            )
        })
        .and_then(|_| {
            sweep(
                &res.w3_sweep,
                "W3: streaming large messages (thin lines: zero-copy API)",
                "GB/s (log scale)",
                &dir.join(FILES[2].0),
            )
        });
    if let Err(e) = r {
        panic!("plotting failed: {e}");
    }
}
