//! Charts drawn on the server as SVG: bars with a highlighted part (the suspicious share of a
//! volume, say) and an optional threshold line. Presentation attributes only (the page's
//! Content-Security-Policy allows no inline style), a title and description for screen readers,
//! and every chart is followed by its numbers as a table on the page.

use maud::{Markup, html};

pub struct Bar {
    pub label: String,
    pub total: f64,
    /// The part of `total` drawn in the warning colour.
    pub part: f64,
}

pub struct Chart<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub description: String,
    pub bars: Vec<Bar>,
    /// A horizontal line at this value, with its label.
    pub line: Option<(f64, String)>,
    /// Label every n-th bar on the x axis.
    pub label_every: usize,
}

const W: f64 = 720.0;
const H: f64 = 240.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 16.0;

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 4.0, 8.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub fn render(c: &Chart) -> Markup {
    let max = c
        .bars
        .iter()
        .map(|b| b.total)
        .chain(c.line.iter().map(|l| l.0))
        .fold(0.0, f64::max);
    let max = nice_max(max);
    let plot_h = H - BOTTOM - TOP;
    let plot_w = W - LEFT - 8.0;
    let n = c.bars.len().max(1) as f64;
    let slot = plot_w / n;
    let bar_w = (slot * 0.8).max(1.0);
    let y = |v: f64| TOP + plot_h - (v / max) * plot_h;
    let title_id = format!("{}-title", c.id);
    let desc_id = format!("{}-desc", c.id);
    html! {
        svg.chart viewBox=(format!("0 0 {W} {H}")) role="img" aria-labelledby=(format!("{title_id} {desc_id}")) xmlns="http://www.w3.org/2000/svg" {
            title #(title_id) { (c.title) }
            desc #(desc_id) { (c.description) }
            @for k in 0..=4 {
                @let v = max * f64::from(k) / 4.0;
                line x1=(LEFT) x2=(W - 8.0) y1=(y(v)) y2=(y(v)) stroke="#d0d7de" stroke-width="1" {}
                text x=(LEFT - 6.0) y=(y(v) + 4.0) text-anchor="end" font-size="11" fill="#4a5562" { (fmt(v)) }
            }
            @for (i, b) in c.bars.iter().enumerate() {
                @let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
                rect x=(x) y=(y(b.total)) width=(bar_w) height=((b.total / max) * plot_h) fill="#0b5cad" {}
                @if b.part > 0.0 {
                    rect x=(x) y=(y(b.part)) width=(bar_w) height=((b.part / max) * plot_h) fill="#c1272d" {}
                }
                @if c.label_every > 0 && i % c.label_every == 0 {
                    text x=(x + bar_w / 2.0) y=(H - 8.0) text-anchor="middle" font-size="11" fill="#4a5562" { (b.label) }
                }
            }
            @if let Some((v, label)) = &c.line {
                line x1=(LEFT) x2=(W - 8.0) y1=(y(*v)) y2=(y(*v)) stroke="#7a4b00" stroke-width="2" stroke-dasharray="6 4" {}
                text x=(W - 10.0) y=(y(*v) - 5.0) text-anchor="end" font-size="12" fill="#7a4b00" { (label) }
            }
        }
    }
}
