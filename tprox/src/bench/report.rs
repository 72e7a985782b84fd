//! Turning the figures into a table, the ratios that matter, and JSON.

use std::fmt::Write;
use std::time::Duration;

use serde_json::{json, Value};

use super::Figures;

/// The mean and the 99th percentile of round-trip times, in seconds.
pub fn mean_and_p99(times: &[Duration]) -> (f64, f64) {
    if times.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut secs: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
    secs.sort_by(f64::total_cmp);
    let mean = secs.iter().sum::<f64>() / secs.len() as f64;
    let p99 = secs[((secs.len() - 1) as f64 * 0.99).round() as usize];
    (mean, p99)
}

/// Per target, the median of each figure over the rounds, and each metric's spread.
pub fn medians(rounds: Vec<Vec<Figures>>) -> Vec<Figures> {
    let Some(first) = rounds.first() else {
        return Vec::new();
    };
    (0..first.len())
        .map(|i| {
            let all: Vec<&Figures> = rounds.iter().map(|r| &r[i]).collect();
            let pick = |get: &dyn Fn(&Figures) -> Option<f64>| {
                median(all.iter().filter_map(|f| get(f)).collect())
            };
            let mut errors: Vec<String> = all.iter().flat_map(|f| f.errors.clone()).collect();
            errors.dedup();
            let spread = METRICS
                .iter()
                .filter_map(|metric| {
                    let values: Vec<f64> = all.iter().filter_map(|f| (metric.get)(f)).collect();
                    let low = values.iter().copied().reduce(f64::min)?;
                    let high = values.iter().copied().reduce(f64::max)?;
                    Some((metric.key, (low, high)))
                })
                .collect();
            Figures {
                name: all[0].name.clone(),
                version: all[0].version.clone(),
                one_stream: pick(&|f| f.one_stream),
                n_streams: pick(&|f| f.n_streams),
                rtt_mean: pick(&|f| f.rtt_mean),
                rtt_p99: pick(&|f| f.rtt_p99),
                conn_rate: pick(&|f| f.conn_rate),
                cpu_per_gb: pick(&|f| f.cpu_per_gb),
                cpu_per_conn: pick(&|f| f.cpu_per_conn),
                syscalls: median_count(all.iter().filter_map(|f| f.syscalls.clone()).collect()),
                rss: pick(&|f| f.rss.map(|r| r as f64)).map(|r| r as u64),
                idle_rss: all.iter().find_map(|f| f.idle_rss),
                idle_base_rss: all.iter().find_map(|f| f.idle_base_rss),
                idle_count: all.iter().find_map(|f| f.idle_count),
                errors,
                spread,
            }
        })
        .collect()
}

/// Whether two ranges of round values share a point: then neither figure leads for sure.
pub fn overlaps(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

/// The round whose count is the median: its breakdown by call adds up to the median.
fn median_count(mut counts: Vec<super::syscalls::Count>) -> Option<super::syscalls::Count> {
    counts.sort_by(|a, b| a.per_connection.total_cmp(&b.per_connection));
    let middle = counts.len() / 2;
    counts.into_iter().nth(middle)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// One metric, how to read it, and the goal the reference is held to against the best peer.
pub struct Metric {
    pub key: &'static str,
    pub title: &'static str,
    pub get: fn(&Figures) -> Option<f64>,
    /// Whether a bigger figure is better.
    pub higher_is_better: bool,
    /// The reference's goal as a ratio to the best peer (reference / best).
    pub goal: Option<f64>,
    /// Where the machine caps the figure for any proxy, as a share of the direct
    /// connection's: a proxied connection costs the kernel two TCP connections where the
    /// direct one costs one, so on loopback no proxy opens more than about half the direct
    /// rate, and a proxy near that limit is judged by its cost per connection instead.
    pub limit_of_direct: Option<f64>,
    pub show: fn(f64) -> String,
}

pub const METRICS: &[Metric] = &[
    Metric {
        key: "one_stream_bytes_per_sec",
        title: "1-stream throughput",
        get: |f| f.one_stream,
        higher_is_better: true,
        goal: Some(1.5),
        limit_of_direct: None,
        show: rate,
    },
    Metric {
        key: "n_streams_bytes_per_sec",
        title: "N-stream throughput",
        get: |f| f.n_streams,
        higher_is_better: true,
        goal: None,
        limit_of_direct: None,
        show: rate,
    },
    Metric {
        key: "rtt_mean_secs",
        title: "64 B ping-pong mean RTT",
        get: |f| f.rtt_mean,
        higher_is_better: false,
        goal: Some(0.9),
        limit_of_direct: None,
        show: micros,
    },
    Metric {
        key: "rtt_p99_secs",
        title: "64 B ping-pong p99 RTT",
        get: |f| f.rtt_p99,
        higher_is_better: false,
        goal: None,
        limit_of_direct: None,
        show: micros,
    },
    Metric {
        key: "connections_per_sec",
        title: "new connections per second",
        get: |f| f.conn_rate,
        higher_is_better: true,
        // No peer ahead: beyond that, the machine's limit decides (`limit_of_direct`).
        goal: Some(1.0),
        limit_of_direct: Some(0.5),
        show: |v| format!("{v:.0}/s"),
    },
    Metric {
        key: "cpu_secs_per_gb",
        title: "CPU time per GB",
        get: |f| f.cpu_per_gb,
        higher_is_better: false,
        goal: None,
        limit_of_direct: None,
        show: |v| format!("{v:.2} s"),
    },
    Metric {
        key: "cpu_secs_per_connection",
        title: "CPU time per connection",
        get: |f| f.cpu_per_conn,
        higher_is_better: false,
        goal: Some(0.8),
        limit_of_direct: None,
        show: micros,
    },
    Metric {
        key: "syscalls_per_connection",
        title: "system calls per connection",
        get: |f| f.syscalls.as_ref().map(|c| c.per_connection),
        higher_is_better: false,
        goal: Some(1.0),
        limit_of_direct: None,
        show: |v| format!("{v:.1}"),
    },
];

fn rate(bytes_per_sec: f64) -> String {
    if bytes_per_sec >= 1e9 {
        format!("{:.2} GB/s", bytes_per_sec / 1e9)
    } else {
        format!("{:.0} MB/s", bytes_per_sec / 1e6)
    }
}

fn micros(secs: f64) -> String {
    format!("{:.1} µs", secs * 1e6)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The names that count as peers of `subject`: every proxy of the same kind (plain
/// forwarders, SOCKS5 fronts, HTTP CONNECT fronts) but the subject itself, its other modes
/// (names starting alike), the user's own command and the direct connection.
fn is_peer(subject: &str, name: &str) -> bool {
    let front = |name: &str| crate::profiles::find(name).ok().and_then(|p| p.front);
    name != "direct"
        && name != "yours"
        && !name.starts_with(subject)
        && !subject.starts_with(name)
        && front(name) == front(subject)
}

/// The reference's fronts, each compared with the measured fronts of its kind, as the main
/// subject is with the forwarders.
const FRONT_SUBJECTS: &[&str] = &["ref-socks5", "ref-connect"];

/// The subjects whose ratios are shown: `subject` if it was measured, then each of the
/// reference's fronts that was measured beside a front of its kind.
fn subjects<'a>(figures: &[Figures], subject: &'a str) -> Vec<&'a str> {
    let measured = |name: &str| figures.iter().any(|f| f.name == name);
    let has_peer = |name: &str| figures.iter().any(|f| is_peer(name, &f.name));
    std::iter::once(subject)
        .filter(|s| measured(s))
        .chain(
            FRONT_SUBJECTS
                .iter()
                .copied()
                .filter(|s| *s != subject && measured(s) && has_peer(s)),
        )
        .collect()
}

/// The best peer's figure for `metric`, and its name.
pub fn best_peer<'a>(
    figures: &'a [Figures],
    subject: &str,
    metric: &Metric,
) -> Option<(&'a str, f64)> {
    figures
        .iter()
        .filter(|f| is_peer(subject, &f.name))
        .filter_map(|f| (metric.get)(f).map(|v| (f.name.as_str(), v)))
        .reduce(|best, next| {
            let better = if metric.higher_is_better {
                next.1 > best.1
            } else {
                next.1 < best.1
            };
            if better {
                next
            } else {
                best
            }
        })
}

/// The human table, the ratios for `subject` (normally `ref`), and the idle memory.
pub fn table(figures: &[Figures], subject: &str, settings: &str) -> String {
    let mut out = format!("{settings}\n\n");
    out.push_str(&figures_table(figures));
    for f in figures {
        for e in &f.errors {
            let _ = writeln!(out, "  {}: could not measure {e}", f.name);
        }
    }
    for (i, name) in subjects(figures, subject).into_iter().enumerate() {
        out.push_str(&ratios(figures, name));
        if i == 0 && name == subject {
            out.push_str(&idle_lines(figures));
        }
    }
    out.push_str(&call_lines(figures));
    out
}

/// Each proxy's system calls per connection by call, most frequent first: where a proxy's
/// cost per connection goes, and what one proxy makes that another does not.
fn call_lines(figures: &[Figures]) -> String {
    let mut out = String::new();
    for f in figures {
        let Some(count) = &f.syscalls else {
            continue;
        };
        if out.is_empty() {
            let _ = writeln!(
                out,
                "\nSystem calls per connection, by call ({} connections one at a time, or as \
                 many as go through in {} s, under strace):",
                super::syscalls::CONNECTIONS,
                super::syscalls::COUNT_LIMIT.as_secs()
            );
        }
        let mut calls: Vec<(&String, &f64)> = count.by_call.iter().collect();
        calls.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
        let calls: Vec<String> = calls
            .into_iter()
            .filter(|(_, per)| **per >= 0.05)
            .map(|(name, per)| format!("{name} {per:.1}"))
            .collect();
        let _ = writeln!(
            out,
            "  {}: {:.1} = {}",
            f.name,
            count.per_connection,
            calls.join(", ")
        );
    }
    out
}

/// A proxy's figures as the tables show them, `missing` where there is none.
fn cells(f: &Figures, missing: &str) -> [String; 9] {
    let cell = |v: Option<f64>, show: &dyn Fn(f64) -> String| v.map(show).unwrap_or(missing.into());
    [
        cell(f.one_stream, &rate),
        cell(f.n_streams, &rate),
        cell(f.rtt_mean, &micros),
        cell(f.rtt_p99, &micros),
        cell(f.conn_rate, &|v| format!("{v:.0}")),
        cell(f.cpu_per_gb, &|v| format!("{v:.2} s")),
        cell(f.cpu_per_conn, &micros),
        cell(f.syscalls.as_ref().map(|c| c.per_connection), &|v| {
            format!("{v:.1}")
        }),
        f.rss.map(mib).unwrap_or(missing.into()),
    ]
}

/// One row per proxy, one column per figure, aligned.
fn figures_table(figures: &[Figures]) -> String {
    let header = [
        "proxy",
        "1 stream",
        "N streams",
        "RTT mean",
        "RTT p99",
        "conn/s",
        "CPU/GB",
        "CPU/conn",
        "calls/conn",
        "RSS",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for f in figures {
        rows.push(
            std::iter::once(f.name.clone())
                .chain(cells(f, "-"))
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, text)| {
                let pad = widths[c] - text.chars().count();
                if c == 0 {
                    format!("{text}{}", " ".repeat(pad))
                } else {
                    format!("{}{text}", " ".repeat(pad))
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// `subject`'s figures against the best other proxy's, with the goals and the direct
/// connection's figure as the ceiling.
fn ratios(figures: &[Figures], subject: &str) -> String {
    let mut out = String::new();
    let Some(me) = figures.iter().find(|f| f.name == subject) else {
        return out;
    };
    if !figures.iter().any(|f| is_peer(subject, &f.name)) {
        return out; // nothing of its kind measured
    }
    let _ = writeln!(
        out,
        "\n{subject} against the best other proxy of its kind (and the direct connection):"
    );
    let direct = figures.iter().find(|f| f.name == "direct");
    for metric in METRICS {
        let Some(mine) = (metric.get)(me) else {
            continue;
        };
        let Some((peer, best)) = best_peer(figures, subject, metric) else {
            continue;
        };
        let ratio = mine / best;
        let mut line = format!(
            "  {:<27} {} vs {} ({peer}): {ratio:.2}x",
            metric.title,
            (metric.show)(mine),
            (metric.show)(best)
        );
        let peer_figures = figures.iter().find(|f| f.name == peer);
        if let (Some(a), Some(b)) = (
            me.spread.get(metric.key),
            peer_figures.and_then(|p| p.spread.get(metric.key)),
        ) {
            let _ = write!(
                line,
                "  [rounds {}–{} vs {}–{}{}]",
                (metric.show)(a.0),
                (metric.show)(a.1),
                (metric.show)(b.0),
                (metric.show)(b.1),
                if overlaps(*a, *b) {
                    ": the spreads overlap, no lead either way"
                } else {
                    ""
                }
            );
        }
        if let Some(goal) = metric.goal {
            let (met, sign) = if metric.higher_is_better {
                (ratio >= goal, "≥")
            } else {
                (ratio <= goal, "≤")
            };
            let _ = write!(
                line,
                "  goal {sign} {goal}x: {}",
                if met { "met" } else { "NOT met" }
            );
        }
        if let Some(limit) = direct.and_then(|d| (metric.get)(d)) {
            match metric.limit_of_direct {
                None => {
                    let _ = write!(line, "  [direct {}]", (metric.show)(limit));
                }
                Some(share) => {
                    let _ = write!(
                        line,
                        "  [direct {}; the machine's limit, {:.0} % of it: {}, reached {:.0} %]",
                        (metric.show)(limit),
                        100.0 * share,
                        (metric.show)(limit * share),
                        100.0 * mine / (limit * share)
                    );
                }
            }
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

/// What an idle connection costs each proxy that was measured idle.
fn idle_lines(figures: &[Figures]) -> String {
    let mut out = String::new();
    for f in figures {
        let (Some(rss), Some(count)) = (f.idle_rss, f.idle_count) else {
            continue;
        };
        let base = f.idle_base_rss.unwrap_or(0);
        let each = rss.saturating_sub(base) as f64 / count.max(1) as f64;
        let _ = writeln!(
            out,
            "  {count} idle connections through {}: {} resident ({} before them; {:.2} KiB each, \
             {} projected for 10,000)",
            f.name,
            mib(rss),
            mib(base),
            each / 1024.0,
            mib(base + (each * 10_000.0) as u64)
        );
    }
    out
}

/// The same as JSON: settings, every figure, and the subject's ratios to the best peer.
pub fn json(figures: &[Figures], subject: &str, settings: Value) -> Value {
    let proxies: Vec<Value> = figures
        .iter()
        .map(|f| {
            let mut entry = json!({ "name": f.name, "version": f.version });
            for metric in METRICS {
                entry[metric.key] = json!((metric.get)(f));
            }
            entry["syscalls_by_call"] = json!(f.syscalls.as_ref().map(|c| &c.by_call));
            entry["rss_bytes"] = json!(f.rss);
            entry["idle_rss_bytes"] = json!(f.idle_rss);
            entry["idle_base_rss_bytes"] = json!(f.idle_base_rss);
            entry["idle_connections"] = json!(f.idle_count);
            entry["errors"] = json!(f.errors);
            entry["spread"] = json!(f
                .spread
                .iter()
                .map(|(key, (low, high))| (key.to_string(), json!([low, high])))
                .collect::<serde_json::Map<_, _>>());
            entry
        })
        .collect();
    let fronts: serde_json::Map<_, _> = subjects(figures, subject)
        .into_iter()
        .filter(|name| *name != subject)
        .map(|name| (name.to_string(), ratios_json(figures, name)))
        .collect();
    json!({
        "settings": settings,
        "proxies": proxies,
        "subject": subject,
        "ratios_to_best_peer": ratios_json(figures, subject),
        "fronts_ratios_to_best_peer": fronts,
    })
}

/// `subject`'s ratios to its best peer, one entry per metric, with whether the spreads overlap.
fn ratios_json(figures: &[Figures], subject: &str) -> Value {
    let mut ratios = serde_json::Map::new();
    if let Some(me) = figures.iter().find(|f| f.name == subject) {
        for metric in METRICS {
            if let (Some(mine), Some((peer, best))) =
                ((metric.get)(me), best_peer(figures, subject, metric))
            {
                let spread_of = |name: &str| {
                    figures
                        .iter()
                        .find(|f| f.name == name)
                        .and_then(|f| f.spread.get(metric.key).copied())
                };
                let overlap = match (spread_of(subject), spread_of(peer)) {
                    (Some(a), Some(b)) => Some(overlaps(a, b)),
                    _ => None,
                };
                ratios.insert(
                    metric.key.into(),
                    json!({
                        "ratio": mine / best,
                        "best_peer": peer,
                        "goal": metric.goal,
                        "spreads_overlap": overlap,
                    }),
                );
            }
        }
    }
    Value::Object(ratios)
}

/// The figures of a report that [`json`] wrote (`tprox bench --json`), or what is wrong with it.
pub fn from_json(report: &Value) -> Result<Vec<Figures>, String> {
    let proxies = report["proxies"]
        .as_array()
        .ok_or("it has no \"proxies\" list")?;
    proxies
        .iter()
        .map(|entry| {
            let name = entry["name"]
                .as_str()
                .ok_or("a proxy has no \"name\"")?
                .to_string();
            let number = |key: &str| entry[key].as_f64();
            let bytes = |key: &str| entry[key].as_u64();
            let mut f = Figures {
                version: entry["version"].as_str().unwrap_or("-").into(),
                rss: bytes("rss_bytes"),
                idle_rss: bytes("idle_rss_bytes"),
                idle_base_rss: bytes("idle_base_rss_bytes"),
                idle_count: bytes("idle_connections").map(|n| n as usize),
                errors: entry["errors"]
                    .as_array()
                    .map(|e| {
                        e.iter()
                            .filter_map(|e| e.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
                name,
                ..Figures::default()
            };
            f.one_stream = number("one_stream_bytes_per_sec");
            f.n_streams = number("n_streams_bytes_per_sec");
            f.rtt_mean = number("rtt_mean_secs");
            f.rtt_p99 = number("rtt_p99_secs");
            f.conn_rate = number("connections_per_sec");
            f.cpu_per_gb = number("cpu_secs_per_gb");
            f.cpu_per_conn = number("cpu_secs_per_connection");
            f.syscalls =
                number("syscalls_per_connection").map(|per_connection| super::syscalls::Count {
                    per_connection,
                    by_call: entry["syscalls_by_call"]
                        .as_object()
                        .map(|calls| {
                            calls
                                .iter()
                                .filter_map(|(name, per)| Some((name.clone(), per.as_f64()?)))
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            for metric in METRICS {
                let range = &entry["spread"][metric.key];
                if let (Some(low), Some(high)) = (range[0].as_f64(), range[1].as_f64()) {
                    f.spread.insert(metric.key, (low, high));
                }
            }
            Ok(f)
        })
        .collect()
}

/// The figures as Markdown, for a page: one table row per proxy (medians), then `subject`'s
/// ratios to the best peer with both spreads, and the idle memory, as a list.
pub fn markdown(figures: &[Figures], subject: &str, settings: &str) -> String {
    let mut out = format!("{settings}\n\n");
    out.push_str(
        "| proxy | 1 stream | N streams | RTT mean | RTT p99 | conn/s | CPU per GB | CPU per conn | \
         calls per conn | RSS |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for f in figures {
        // The versions are the page's to name: some proxies' version lines are a paragraph.
        let name = if f.name == subject {
            format!("**{}**", f.name)
        } else {
            f.name.clone()
        };
        let _ = writeln!(out, "| {name} | {} |", cells(f, "–").join(" | "));
    }
    for name in subjects(figures, subject) {
        let idle = if name == subject {
            idle_lines(figures)
        } else {
            String::new()
        };
        let lines: Vec<String> = ratios(figures, name)
            .lines()
            .chain(idle.lines())
            .filter(|l| l.starts_with("  "))
            .map(|l| format!("- {}", l.trim()))
            .collect();
        if lines.is_empty() {
            continue;
        }
        let peers = match name == subject {
            true => "the best other proxy",
            false => "the best other front of its kind",
        };
        let _ = write!(
            out,
            "\n{name} against {peers}, from the same run (medians; the lowest and highest round \
             of each in brackets):\n\n{}\n",
            lines.join("\n")
        );
    }
    let calls: Vec<String> = call_lines(figures)
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| format!("- {}", l.trim()))
        .collect();
    if !calls.is_empty() {
        let _ = write!(
            out,
            "\nSystem calls per connection, by call ({} connections one at a time, or as many \
             as go through in {} s, under strace; the median round):\n\n{}\n",
            super::syscalls::CONNECTIONS,
            super::syscalls::COUNT_LIMIT.as_secs(),
            calls.join("\n")
        );
    }
    out
}

/// Where a generated part of a page begins and ends: the TCP bench's table, and the UDP
/// bench's.
pub const MARKDOWN_BEGIN: &str = "<!-- tprox bench: generated by `tprox bench --markdown-from";
pub const MARKDOWN_END: &str = "<!-- tprox bench: end of the generated part -->";
pub const UDP_MARKDOWN_BEGIN: &str =
    "<!-- tprox bench --udp: generated by `tprox bench --markdown-from";
pub const UDP_MARKDOWN_END: &str = "<!-- tprox bench --udp: end of the generated part -->";

/// `page` with the text between the markers `begin` and `end` replaced by `generated`, or why
/// it cannot be.
pub fn replace_generated(
    page: &str,
    (begin_marker, end_marker): (&str, &str),
    generated: &str,
) -> Result<String, String> {
    let begin = page
        .find(begin_marker)
        .ok_or_else(|| format!("it has no line starting with {begin_marker}"))?;
    let after_begin = begin
        + page[begin..]
            .find('\n')
            .ok_or("nothing follows the begin marker")?
        + 1;
    let end = page[after_begin..]
        .find(end_marker)
        .map(|i| after_begin + i)
        .ok_or_else(|| format!("it has no {end_marker} after the begin marker"))?;
    Ok(format!(
        "{}\n{generated}\n{}",
        &page[..after_begin],
        &page[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(name: &str, one_stream: f64, rtt: f64) -> Figures {
        Figures {
            name: name.into(),
            one_stream: Some(one_stream),
            rtt_mean: Some(rtt),
            ..Figures::default()
        }
    }

    #[test]
    fn a_saved_report_gives_back_the_figures_it_was_made_from() {
        let rounds = vec![
            vec![figures("ref", 5e9, 1e-4), figures("socat", 4e9, 2e-4)],
            vec![figures("ref", 7e9, 2e-4), figures("socat", 4.5e9, 3e-4)],
        ];
        let all = medians(rounds);
        let saved = json(&all, "ref", json!({}));
        let back = from_json(&saved).unwrap();
        assert_eq!(table(&back, "ref", "s"), table(&all, "ref", "s"));
        let page = markdown(&back, "ref", "settings");
        assert!(page.contains("| **ref** | 7.00 GB/s"), "{page}");
        assert!(page.contains("- 1-stream throughput"), "{page}");
        assert!(from_json(&json!({"proxies": [{}]})).is_err());
    }

    #[test]
    fn the_cost_per_connection_is_judged_against_the_best_peer_and_the_machines_limit() {
        let with_costs = |name: &str, rate: f64, cpu: Option<f64>, calls: Option<f64>| Figures {
            name: name.into(),
            conn_rate: Some(rate),
            cpu_per_conn: cpu,
            syscalls: calls.map(|per_connection| crate::bench::syscalls::Count {
                per_connection,
                by_call: [
                    ("accept4".to_string(), 1.0),
                    ("close".into(), per_connection - 1.0),
                ]
                .into(),
            }),
            ..Figures::default()
        };
        let all = medians(vec![vec![
            with_costs("direct", 20_000.0, None, None),
            with_costs("ref", 9_000.0, Some(40e-6), Some(18.0)),
            with_costs("nginx", 9_500.0, Some(50e-6), Some(20.0)),
        ]]);
        let text = table(&all, "ref", "settings");
        let line = |what: &str| text.lines().find(|l| l.contains(what)).unwrap().to_string();
        // Half the direct rate is the most a proxy can open here: 9,000 is 90 % of it.
        let rate = line("new connections per second");
        assert!(
            rate.contains("0.95x")
                && rate.contains("goal ≥ 1x: NOT met")
                && rate.contains("the machine's limit, 50 % of it: 10000/s, reached 90 %"),
            "{rate}"
        );
        let cpu = line("CPU time per connection");
        assert!(
            cpu.contains("40.0 µs vs 50.0 µs (nginx): 0.80x") && cpu.contains("goal ≤ 0.8x: met"),
            "{cpu}"
        );
        let calls = line("system calls per connection");
        assert!(
            calls.contains("18.0 vs 20.0 (nginx): 0.90x") && calls.contains("goal ≤ 1x: met"),
            "{calls}"
        );
        assert!(
            text.contains("  ref: 18.0 = close 17.0, accept4 1.0\n"),
            "{text}"
        );
        // Saved and read back, the page shows the same.
        let back = from_json(&json(&all, "ref", json!({}))).unwrap();
        assert_eq!(table(&back, "ref", "s"), table(&all, "ref", "s"));
        let page = markdown(&back, "ref", "settings");
        assert!(page.contains("| 40.0 µs | 18.0 |"), "{page}");
        assert!(
            page.contains("- nginx: 20.0 = close 19.0, accept4 1.0"),
            "{page}"
        );
    }

    #[test]
    fn each_figure_keeps_the_spread_of_its_rounds_and_a_lead_inside_it_is_not_claimed() {
        let rounds = vec![
            vec![figures("ref", 5.0, 1.0), figures("socat", 4.0, 1.0)],
            vec![figures("ref", 7.0, 1.0), figures("socat", 4.5, 1.0)],
            vec![figures("ref", 6.0, 1.0), figures("socat", 5.5, 1.0)],
        ];
        let all = medians(rounds);
        assert_eq!(all[0].one_stream, Some(6.0));
        assert_eq!(all[0].spread["one_stream_bytes_per_sec"], (5.0, 7.0));
        assert_eq!(all[1].spread["one_stream_bytes_per_sec"], (4.0, 5.5));
        assert!(overlaps((5.0, 7.0), (4.0, 5.5)));
        assert!(!overlaps((5.0, 7.0), (4.0, 4.9)));
        let text = table(&all, "ref", "settings");
        let line = text.lines().find(|l| l.contains("1-stream")).unwrap();
        assert!(
            line.contains("1.33x") && line.contains("no lead either way"),
            "{line}"
        );
        let value = json(&all, "ref", json!({}));
        let ratio = &value["ratios_to_best_peer"]["one_stream_bytes_per_sec"];
        assert_eq!(ratio["spreads_overlap"], json!(true));
        assert_eq!(
            value["proxies"][0]["spread"]["one_stream_bytes_per_sec"],
            json!([5.0, 7.0])
        );
    }

    #[test]
    fn the_best_peer_excludes_the_subject_its_modes_and_direct() {
        let all = vec![
            figures("direct", 9.0, 1.0),
            figures("ref", 6.0, 3.0),
            figures("ref-buffered", 5.0, 2.0),
            figures("socat", 2.0, 5.0),
            figures("haproxy", 4.0, 4.0),
        ];
        assert_eq!(best_peer(&all, "ref", &METRICS[0]), Some(("haproxy", 4.0)));
        assert_eq!(best_peer(&all, "ref", &METRICS[2]), Some(("haproxy", 4.0)));
        let text = table(&all, "ref", "settings");
        assert!(text.contains("1.50x  goal ≥ 1.5x: met"), "{text}");
        assert!(text.contains("0.75x  goal ≤ 0.9x: met"), "{text}");
    }

    #[test]
    fn the_reference_fronts_are_compared_with_fronts_of_their_kind_only() {
        let all = vec![
            figures("direct", 9e9, 1.0e-4),
            figures("ref", 6e9, 3.0e-4),
            figures("socat", 2e9, 5.0e-4),
            figures("ref-socks5", 5e9, 2.0e-4),
            figures("microsocks", 1e9, 4.0e-4),
            figures("ref-connect", 3e9, 2.0e-4),
            figures("squid", 8e9, 1.5e-4),
        ];
        assert_eq!(best_peer(&all, "ref", &METRICS[0]), Some(("socat", 2e9)));
        assert_eq!(
            best_peer(&all, "ref-socks5", &METRICS[0]),
            Some(("microsocks", 1e9))
        );
        assert_eq!(
            best_peer(&all, "ref-connect", &METRICS[0]),
            Some(("squid", 8e9))
        );
        let text = table(&all, "ref", "settings");
        assert!(
            text.contains("ref-socks5 against the best other proxy of its kind")
                && text.contains("(microsocks): 5.00x"),
            "{text}"
        );
        let value = json(&all, "ref", json!({}));
        let squid = &value["fronts_ratios_to_best_peer"]["ref-connect"]["one_stream_bytes_per_sec"];
        assert_eq!(squid["best_peer"], "squid");
        assert_eq!(
            value["ratios_to_best_peer"]["one_stream_bytes_per_sec"]["best_peer"],
            "socat"
        );
        let page = markdown(&from_json(&value).unwrap(), "ref", "settings");
        assert!(
            page.contains("ref-connect against the best other front of its kind")
                && page.contains("(squid): 0.38x"),
            "{page}"
        );
        // Without a front of its kind measured, a front of the reference gets no ratios.
        let alone = vec![
            figures("ref", 6e9, 3.0e-4),
            figures("ref-socks5", 5e9, 2.0e-4),
        ];
        assert!(!table(&alone, "ref", "s").contains("ref-socks5 against"));
    }

    #[test]
    fn percentiles_and_medians() {
        let times: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let (mean, p99) = mean_and_p99(&times);
        assert!((mean - 50.5e-6).abs() < 1e-9);
        assert!((p99 - 99e-6).abs() < 1e-9);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
    }
}
