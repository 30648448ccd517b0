//! Runs per second over time, drawn twice: a sparkline for the terminal, and a small SVG
//! with no outside references (fonts, scripts, styles) to keep beside the report.

use std::fmt::Write;

use super::report::Throughput;

/// Buckets in the sparkline and the chart.
pub const SPARK_WIDTH: usize = 60;

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One character per value, scaled to the largest; zero is a blank, so idle stretches show.
pub fn sparkline(values: &[f64]) -> String {
    let peak = values.iter().copied().fold(0.0, f64::max);
    values
        .iter()
        .map(|&v| {
            if v <= 0.0 || peak <= 0.0 {
                ' '
            } else {
                let level = ((v / peak) * BARS.len() as f64).ceil() as usize;
                BARS[level.clamp(1, BARS.len()) - 1]
            }
        })
        .collect()
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 32.0;
const BOTTOM: f64 = 36.0;

/// Characters XML gives a meaning to, in text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A bar chart of `throughput` titled `title`.
pub fn svg(throughput: &Throughput, title: &str) -> String {
    let values = &throughput.runs_per_second;
    let peak = throughput.peak().max(1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let bar_w = plot_w / values.len().max(1) as f64;
    let span = throughput.bucket_seconds * values.len() as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">"##
    );
    let _ = writeln!(
        out,
        r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="18" font-size="13" fill="#222222">{}</text>"##,
        escape(title)
    );
    for (i, &v) in values.iter().enumerate() {
        let h = v / peak * plot_h;
        let _ = writeln!(
            out,
            r##"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="#3b7dd8"><title>{:.1}s: {v:.1} runs/s</title></rect>"##,
            LEFT + i as f64 * bar_w,
            TOP + plot_h - h,
            (bar_w - 1.0).max(0.5),
            h,
            i as f64 * throughput.bucket_seconds,
        );
    }
    // axes, the peak and the time span
    let base = TOP + plot_h;
    let _ = writeln!(
        out,
        r##"<path d="M{LEFT} {TOP} V{base} H{}" stroke="#444444" fill="none"/>"##,
        LEFT + plot_w
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#444444">{peak:.0}/s</text>"##,
        LEFT - 6.0,
        TOP + 4.0
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{base}" text-anchor="end" fill="#444444">0</text>"##,
        LEFT - 6.0
    );
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="{}" fill="#444444">0s</text>"##,
        base + 16.0
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#444444">{span:.1}s after the commit ({}s per bar)</text>"##,
        LEFT + plot_w,
        base + 16.0,
        throughput.bucket_seconds
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_to_the_peak_and_show_idle_time() {
        assert_eq!(sparkline(&[0.0, 1.0, 4.0, 8.0]), " ▁▄█");
        assert_eq!(sparkline(&[0.0, 0.0]), "  ");
        assert_eq!(sparkline(&[0.01, 100.0]), "▁█");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn the_chart_is_one_self_contained_svg() {
        let t = Throughput {
            bucket_seconds: 0.5,
            runs_per_second: vec![2.0, 4.0, 0.0],
        };
        let svg = svg(&t, "runs per second <simulate-x>");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("runs per second &lt;simulate-x&gt;"));
        assert_eq!(
            svg.matches("fill=\"#3b7dd8\"").count(),
            3,
            "one bar per bucket"
        );
        assert!(svg.contains(">4/s</text>"));
        assert!(svg.contains("1.5s after the commit (0.5s per bar)"));
        // nothing fetched from elsewhere
        assert!(!svg.contains("href") && !svg.contains("<script") && !svg.contains("url("));
    }
}
