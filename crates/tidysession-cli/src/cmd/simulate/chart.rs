//! The `--chart` SVG: live rows over the requests, one line per policy.

use std::fmt::Write as _;

use super::report::Report;

impl Report {
    /// Rows over time, one line per policy, as a small standalone SVG.
    pub(super) fn svg(&self) -> String {
        const W: f64 = 720.0;
        const H: f64 = 400.0;
        const LEFT: f64 = 70.0;
        const RIGHT: f64 = 20.0;
        const TOP: f64 = 40.0;
        const BOTTOM: f64 = 50.0;
        const STYLES: [(&str, &str); 3] = [
            ("#d62728", ""),
            ("#ff7f0e", " stroke-dasharray=\"6 4\""),
            ("#1f77b4", ""),
        ];
        let max_x = (self.plan.steps.len() as u64).max(1);
        let max_rows = self
            .outcomes
            .iter()
            .flat_map(|o| o.samples.iter().map(|s| s.1))
            .max()
            .unwrap_or(0);
        let max_y = nice_ceiling(max_rows.max(5));
        let x = |v: u64| LEFT + (W - LEFT - RIGHT) * v as f64 / max_x as f64;
        let y = |v: u64| H - BOTTOM - (H - TOP - BOTTOM) * v as f64 / max_y as f64;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
             viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">"
        );
        let _ = writeln!(s, "<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>");
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">Session rows in the \
             store over {} requests (seed {})</text>",
            W / 2.0,
            max_x,
            self.plan.seed
        );
        // Grid and axes.
        for i in 0..=5u64 {
            let vy = max_y * i / 5;
            let py = y(vy);
            let _ = writeln!(
                s,
                "<line x1=\"{LEFT}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{vy}</text>",
                W - RIGHT,
                LEFT - 6.0,
                py + 4.0
            );
            let vx = max_x * i / 5;
            let px = x(vx);
            let _ = writeln!(
                s,
                "<line x1=\"{px:.1}\" y1=\"{:.1}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>\
                 <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{vx}</text>",
                H - BOTTOM,
                H - BOTTOM + 5.0,
                H - BOTTOM + 18.0
            );
        }
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{:.1}\" stroke=\"#333\"/>\
             <line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>",
            H - BOTTOM,
            H - BOTTOM,
            W - RIGHT,
            H - BOTTOM
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">requests</text>\
             <text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">live rows</text>",
            LEFT + (W - LEFT - RIGHT) / 2.0,
            H - 12.0,
            TOP + (H - TOP - BOTTOM) / 2.0,
            TOP + (H - TOP - BOTTOM) / 2.0
        );
        // One line per policy, and the legend.
        for (i, o) in self.outcomes.iter().enumerate() {
            let (color, dash) = STYLES[i % STYLES.len()];
            let points: Vec<String> = o
                .samples
                .iter()
                .map(|&(vx, vy)| format!("{:.1},{:.1}", x(vx), y(vy)))
                .collect();
            let _ = writeln!(
                s,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash} points=\"{}\"/>",
                points.join(" ")
            );
            let ly = TOP + 12.0 + 18.0 * i as f64;
            let _ = writeln!(
                s,
                "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" \
                 stroke-width=\"2\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\">{}: {} rows</text>",
                LEFT + 12.0,
                LEFT + 40.0,
                LEFT + 46.0,
                ly + 4.0,
                o.policy.title(),
                o.rows
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// The smallest 1, 2 or 5 × 10ⁿ at least `v`.
pub(super) fn nice_ceiling(v: u64) -> u64 {
    let mut scale = 1u64;
    loop {
        for m in [1, 2, 5] {
            if let Some(c) = scale.checked_mul(m) {
                if c >= v {
                    return c;
                }
            } else {
                return v;
            }
        }
        scale = match scale.checked_mul(10) {
            Some(s) => s,
            None => return v,
        };
    }
}
