//! Latency by percentile, several scenarios on one SVG, in the style of the HdrHistogram
//! plotter: the x axis is `1/(1-percentile)` on a log scale, so the tail gets the room.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Draws one line per `(name, histogram)`; values are µs, the plot is in ms.
pub fn latency_by_percentile(
    path: &Path,
    title: &str,
    series: &[(String, &Histogram<u64>)],
) -> Result<(), String> {
    let points: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, h)| {
            let pts = h
                .iter_quantiles(5)
                .filter(|v| v.quantile_iterated_to() < 1.0)
                .map(|v| {
                    (
                        1.0 / (1.0 - v.quantile_iterated_to()),
                        v.value_iterated_to() as f64 / 1000.0,
                    )
                })
                .collect();
            (name.clone(), pts)
        })
        .collect();
    let max_y = points
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(0.001, f64::max)
        * 1.1;
    let max_x = 10_000.0; // up to 99.99th
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((1.0..max_x).log_scale(), 0.0..max_y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| format!("{}%", trim(100.0 * (1.0 - 1.0 / x))))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (name, pts)) in points.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let clipped: Vec<(f64, f64)> = pts.into_iter().filter(|(x, _)| *x <= max_x).collect();
        chart
            .draw_series(LineSeries::new(clipped, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn trim(p: f64) -> String {
    let s = format!("{p:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_every_series() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let mut b = a.clone();
        for i in 1..=10_000u64 {
            a.record(100 + i % 50).unwrap();
            b.record(200 + i % 500).unwrap();
        }
        let path = dir.path().join("p.svg");
        latency_by_percentile(&path, "test", &[("direct".into(), &a), ("mesh".into(), &b)])
            .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("direct") && svg.contains("mesh") && svg.contains("percentile"));
    }
}
