//! Outbound traffic: the last 24 hours by hour and the last 30 days by day, drawn against the
//! tenant's limits, with the counters beside their thresholds.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::html;

use crate::chart::{Bar, Chart, render};
use crate::page::Shell;
use crate::state::ConsoleState;
use crate::tenant::{counter_table, open};
use crate::viewer::Viewer;

pub async fn page(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path(tenant): Path<String>,
) -> Response {
    let t = opened!(open(&v, &s, &tenant).await);
    let w = v.w();
    let traffic = tried!(v, s.control.traffic(&t.name).await);
    let counters = tried!(v, s.control.counters(&t.name).await);
    let lim = &traffic.limits;
    let hour_label = |ms: i64| crate::page::time(ms)[11..13].to_string() + "h";
    let day_label = |ms: i64| crate::page::time(ms)[5..10].to_string();
    let (mut sum_m, mut sum_s, mut sum_u) = (0u64, 0u64, 0u64);
    for (_, c) in &traffic.hours {
        sum_m += u64::from(c.messages);
        sum_s += u64::from(c.suspicious);
        sum_u += u64::from(c.unregistered);
    }
    let share = |part: u64, all: u64| {
        if all == 0 {
            0.0
        } else {
            part as f64 * 100.0 / all as f64
        }
    };
    let day_chart = Chart {
        id: "chart-24h",
        title: w.t("chart_24h_title"),
        description: w.f(
            "chart_24h_desc",
            &[
                ("messages", &sum_m.to_string()),
                ("suspicious", &sum_s.to_string()),
                ("unregistered", &sum_u.to_string()),
            ],
        ),
        bars: traffic
            .hours
            .iter()
            .map(|(at, c)| Bar {
                label: hour_label(*at),
                total: f64::from(c.messages),
                part: f64::from(c.suspicious),
            })
            .collect(),
        line: None,
        label_every: 3,
    };
    let month_chart = Chart {
        id: "chart-30d",
        title: w.t("chart_30d_title"),
        description: w.f(
            "chart_30d_desc",
            &[(
                "messages",
                &traffic
                    .days
                    .iter()
                    .map(|d| d.messages)
                    .sum::<u64>()
                    .to_string(),
            )],
        ),
        bars: traffic
            .days
            .iter()
            .map(|d| Bar {
                label: day_label(d.day_start),
                total: d.messages as f64,
                part: d.suspicious as f64,
            })
            .collect(),
        line: None,
        label_every: 5,
    };
    let ratio = lim.tenant_suspicious_ratio * 100.0;
    let share_chart = Chart {
        id: "chart-share",
        title: w.t("chart_share_title"),
        description: w.f("chart_share_desc", &[("ratio", &format!("{ratio:.0}"))]),
        bars: traffic
            .days
            .iter()
            .map(|d| {
                let p = share(d.suspicious, d.messages);
                Bar {
                    label: day_label(d.day_start),
                    total: p,
                    part: if p >= ratio { p } else { 0.0 },
                }
            })
            .collect(),
        line: Some((
            ratio,
            w.f("threshold_line", &[("value", &format!("{ratio:.0} %"))]),
        )),
        label_every: 5,
    };
    let body = html! {
        p { (w.t("traffic_intro")) }
        section aria-labelledby="h-24h" {
            h2 #h-24h { (w.t("chart_24h_title")) }
            (render(&day_chart))
            dl.evidence {
                dt { (w.t("messages_24h")) } dd { (sum_m) }
                dt { (w.t("suspicious_share_24h")) } dd { (format!("{:.1} %", share(sum_s, sum_m))) " · " (w.f("limit_is", &[("value", &format!("{ratio:.0} %"))])) }
                dt { (w.t("unregistered_24h")) } dd { (sum_u) " · " (w.f("limit_is", &[("value", &lim.unregistered_allowance_per_day.to_string())])) }
                dt { (w.t("unregistered_share_24h")) } dd { (format!("{:.1} %", share(sum_u, sum_m))) }
            }
        }
        section aria-labelledby="h-30d" {
            h2 #h-30d { (w.t("chart_30d_title")) }
            (render(&month_chart))
            (render(&share_chart))
            div.scroll tabindex="0" role="region" aria-label=(w.t("days_caption")) { table {
                caption { (w.t("days_caption")) }
                thead { tr { th scope="col" { (w.t("day")) } th scope="col" { (w.t("messages")) } th scope="col" { (w.t("recipients")) } th scope="col" { (w.t("suspicious")) } } }
                tbody { @for d in traffic.days.iter().rev().filter(|d| d.messages > 0) {
                    tr { td { (crate::page::time(d.day_start)[..10].to_string()) } td { (d.messages) } td { (d.recipients) } td { (d.suspicious) } }
                } }
            } }
        }
        section aria-labelledby="counters" {
            h2 #counters { (w.t("counters_title")) }
            (counter_table(&v, &counters))
        }
    };
    Shell::of(&v, w.t("traffic").to_string())
        .tenant(&tenant, "traffic")
        .render(body)
}
