//! The gradebook as one self-contained HTML page: a matrix of submissions × cases, each cell
//! coloured by outcome, each failure expandable to its diagnostic, rows sortable by total or
//! name. No external file, script or font: the page is mailed, archived and opened offline.

use super::Output;
use crate::grade::gradebook::{number, CaseResult, Gradebook, GradedCase, Status, Submission};
use crate::html::escape;
use crate::verdict::Verdict;

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .2em; }
p.meta { color: #555; margin: 0 0 1em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 2px 4px; vertical-align: top; }
thead th { background: #f4f4f4; position: sticky; top: 0; }
th.case { writing-mode: vertical-rl; transform: rotate(180deg); font-weight: normal; white-space: nowrap; }
th[data-sort] { cursor: pointer; text-decoration: underline dotted; }
td.total { font-weight: bold; text-align: right; }
td.pass { background: #c8e6c9; } td.flaky { background: #fff3b0; }
td.fail { background: #ffcdd2; } td.skip { background: #e0e0e0; }
td.not-run { background: #bdbdbd; } td.status-bad { background: #ffcdd2; }
p.warning { background: #ffcdd2; padding: 0.3em; font-weight: bold; } span.limits { color: #b71c1c; }
td { text-align: center; } td.name, td.status { text-align: left; white-space: nowrap; }
details > summary { cursor: pointer; }
details pre { text-align: left; white-space: pre-wrap; max-width: 40em; font-size: 12px; }
td.unstable { outline: 3px dashed #e65100; outline-offset: -3px; }
span.unstable { color: #e65100; font-weight: bold; }
tfoot td { background: #f4f4f4; font-size: 12px; }
td.name a { font-size: 12px; margin-left: .4em; }
figure { margin: 0 0 1em; } figcaption { color: #555; font-size: 12px; }
"#;

const SCRIPT: &str = r#"
document.querySelectorAll('th[data-sort]').forEach(function (th) {
  th.addEventListener('click', function () {
    var body = document.querySelector('tbody');
    var rows = Array.prototype.slice.call(body.rows);
    var key = th.dataset.sort;
    var down = th.dataset.dir !== 'down';
    th.dataset.dir = down ? 'down' : 'up';
    rows.sort(function (a, b) {
      var x = a.dataset[key], y = b.dataset[key];
      var c = key === 'total' ? Number(x) - Number(y) : x.localeCompare(y);
      return down ? -c : c;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"#;

pub(super) fn files(book: &Gradebook) -> Vec<Output> {
    vec![Output {
        path: "gradebook.html".into(),
        text: render(book),
    }]
}

/// The gradebook's page: the run's facts, the histogram, one row per submission, the class's
/// pass rate per case.
pub fn render(book: &Gradebook) -> String {
    let mut page = String::new();
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<title>tprox gradebook</title>\n<style>");
    page.push_str(STYLE);
    page.push_str("</style>\n</head>\n<body>\n<h1>tprox gradebook</h1>\n");
    page.push_str(&facts(book));
    page.push_str(&histogram(book));
    page.push_str(&table_head(book));
    for s in &book.submissions {
        page.push_str(&row(book, s));
    }
    page.push_str("</tbody>\n");
    page.push_str(&pass_rates(book));
    page.push_str("</table>\n<script>");
    page.push_str(SCRIPT);
    page.push_str("</script>\n</body>\n</html>\n");
    page
}

/// The lines above the table: the class's mean, the run's settings, the sandbox, the legend.
fn facts(book: &Gradebook) -> String {
    let mut page = String::new();
    let graded = book.submissions.len();
    let mean = if graded == 0 {
        0.0
    } else {
        book.submissions.iter().map(|s| s.total).sum::<f64>() / graded as f64
    };
    page.push_str(&format!(
        "<p class=\"meta\">{graded} submission(s), mean {} of {} points · grading file {} · \
         stall timeout {} s · seed {} · started {} · partitions {} · tprox {}</p>\n",
        number(mean),
        number(book.max_total),
        escape(&book.grading_file),
        book.stall_timeout_s,
        book.seed,
        escape(&book.started),
        escape(&book.partitions.join(", ")),
        escape(&book.tprox),
    ));
    if !book.sandbox.is_empty() {
        let warn = !book.sandbox.starts_with("namespaces");
        page.push_str(&format!(
            "<p class=\"meta{}\">sandbox: {}</p>\n",
            if warn { " warning" } else { "" },
            escape(&book.sandbox)
        ));
    }
    page.push_str(
        "<p class=\"meta\">Click a column title to sort; click a red cell for the diagnostic. \
         Green: passed · yellow: flaky (passed on a retry) · red: failed · grey: skipped or \
         not run.</p>\n",
    );
    page
}

/// The table's opening and its header row: one column per case, with its points.
fn table_head(book: &Gradebook) -> String {
    let mut page = String::new();
    page.push_str("<table>\n<thead><tr><th data-sort=\"name\">Submission</th><th>Status</th>");
    page.push_str(&format!(
        "<th data-sort=\"total\">Total<br>/ {}</th>",
        number(book.max_total)
    ));
    for case in &book.cases {
        page.push_str(&format!(
            "<th class=\"case\" title=\"{}\">{} ({})</th>",
            escape(&case.name),
            escape(&case.id),
            number(case.points)
        ));
    }
    page.push_str("</tr></thead>\n<tbody>\n");
    page
}

/// One submission's row: its name and links, its status, its total, a cell per case.
fn row(book: &Gradebook, s: &Submission) -> String {
    let mut page = String::new();
    // Logs sit next to the page: logs/NAME/ (build.log, report.json: every case's trace and
    // the proxy's output).
    let logs = format!("logs/{}/", percent_path(&s.name));
    let report = if s.status == Status::Graded {
        format!(" <a href=\"{logs}report.json\">report</a>")
    } else {
        String::new()
    };
    page.push_str(&format!(
        "<tr data-name=\"{}\" data-total=\"{}\"><td class=\"name\" title=\"{}\">{}<a href=\"{logs}\">logs</a>{report}</td>",
        escape(&s.name),
        s.total,
        escape(&s.path),
        escape(&s.name)
    ));
    page.push_str(&status_cell(s));
    page.push_str(&format!("<td class=\"total\">{}</td>", number(s.total)));
    for (result, case) in s.results.iter().zip(&book.cases) {
        page.push_str(&result_cell(s, result, case));
    }
    page.push_str("</tr>\n");
    page
}

/// A submission's status: its error with the build's output, or how long it took and, with
/// `--repeat`, whether its totals agreed; the limits it ran into under it.
fn status_cell(s: &Submission) -> String {
    let status = match (&s.error, &s.build) {
        (Some(error), build) => format!(
            "<td class=\"status status-bad\"><details><summary>{}</summary><pre>{}{}</pre></details></td>",
            s.status.label(),
            escape(error),
            build
                .as_ref()
                .map(|b| format!("\n\nfull build output: {}", escape(&b.log)))
                .unwrap_or_default()
        ),
        (None, _) if s.run_totals.is_empty() => format!(
            "<td class=\"status\">{} in {:.0} s</td>",
            s.status.label(),
            s.duration_s
        ),
        (None, _) => {
            let totals: Vec<String> = s.run_totals.iter().map(|t| number(*t)).collect();
            let verdict = match s.stable() {
                true => format!("stable over {} runs", totals.len()),
                false => format!(
                    "<span class=\"unstable\">unstable</span>: totals {}",
                    totals.join(", ")
                ),
            };
            format!(
                "<td class=\"status\">{} in {:.0} s<br>{verdict}</td>",
                s.status.label(),
                s.duration_s
            )
        }
    };
    // The limits it ran into, under its status.
    match s.limits.is_empty() {
        true => status,
        false => format!(
            "{}<br><span class=\"limits\">limits reached: {}</span></td>",
            status.strip_suffix("</td>").unwrap_or(&status),
            escape(&s.limits.join("; "))
        ),
    }
}

/// One case's cell: points of points, coloured by verdict, the diagnostic behind a click.
fn result_cell(s: &Submission, result: &CaseResult, case: &GradedCase) -> String {
    let mut page = String::new();
    let mut shown = format!("{}/{}", number(result.points), number(case.points));
    let mut class = result.label().to_string();
    if let Some(unstable) = &result.unstable {
        shown.push_str(&format!(
            " <span class=\"unstable\" title=\"{}\">±</span>",
            escape(unstable)
        ));
        class.push_str(" unstable");
    }
    match &result.message {
        Some(message) if s.status == Status::Graded => page.push_str(&format!(
            "<td class=\"{class}\" title=\"{}\"><details><summary>{shown}</summary><pre>{}{}</pre></details></td>",
            escape(&result.case),
            escape(message),
            result
                .unstable
                .as_ref()
                .map(|u| format!("\n\nnot the same verdict every time: {}", escape(u)))
                .unwrap_or_default()
        )),
        _ => page.push_str(&format!(
            "<td class=\"{class}\" title=\"{}: {}{}\">{shown}</td>",
            escape(&result.case),
            result.label(),
            result
                .unstable
                .as_ref()
                .map(|u| format!(" ({})", escape(u)))
                .unwrap_or_default()
        )),
    }
    page
}

/// The class's pass rate per case, as the table's footer: which cases the class found hard.
/// Submissions that never ran cases (build failed, did not start) count as not passing.
fn pass_rates(book: &Gradebook) -> String {
    let mut row = String::from(
        "<tfoot><tr class=\"pass-rate\"><td class=\"name\">class pass rate</td><td></td><td></td>",
    );
    let count = book.submissions.len();
    for (i, case) in book.cases.iter().enumerate() {
        let passed = book
            .submissions
            .iter()
            .filter(|s| {
                s.results
                    .get(i)
                    .is_some_and(|r| r.points > 0.0 || r.outcome == Some(Verdict::Pass))
            })
            .count();
        let rate = if count == 0 {
            0.0
        } else {
            passed as f64 * 100.0 / count as f64
        };
        row.push_str(&format!(
            "<td title=\"{}: {passed} of {count} passed\">{rate:.0}%</td>",
            escape(&case.id)
        ));
    }
    row.push_str("</tr></tfoot>\n");
    row
}

/// The distribution of totals as an inline SVG bar chart: ten bins from 0 to the maximum
/// (the last one closed), a bar's height its number of submissions.
fn histogram(book: &Gradebook) -> String {
    const BINS: usize = 10;
    const WIDTH: f64 = 420.0;
    const HEIGHT: f64 = 120.0;
    const BAR: f64 = 36.0;
    let mut counts = [0usize; BINS];
    for s in &book.submissions {
        let share = if book.max_total > 0.0 {
            s.total / book.max_total
        } else {
            0.0
        };
        counts[((share * BINS as f64) as usize).min(BINS - 1)] += 1;
    }
    let tallest = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut svg = format!(
        "<figure><svg id=\"histogram\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
         height=\"{}\" role=\"img\" aria-label=\"distribution of totals\">",
        HEIGHT + 20.0
    );
    for (i, &count) in counts.iter().enumerate() {
        let (low, high) = (
            book.max_total * i as f64 / BINS as f64,
            book.max_total * (i + 1) as f64 / BINS as f64,
        );
        let height = (HEIGHT - 14.0) * count as f64 / tallest;
        let x = 4.0 + i as f64 * (BAR + 5.0);
        svg.push_str(&format!(
            "<rect class=\"bin\" data-count=\"{count}\" x=\"{x}\" y=\"{:.1}\" width=\"{BAR}\" \
             height=\"{height:.1}\" fill=\"#5c6bc0\"><title>{count} submission(s) with {}–{}{} \
             points</title></rect>",
            HEIGHT - height,
            number(low),
            number(high),
            if i == BINS - 1 { " (inclusive)" } else { "" }
        ));
        if count > 0 {
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{count}</text>",
                x + BAR / 2.0,
                HEIGHT - height - 3.0
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
            x + BAR / 2.0,
            HEIGHT + 14.0,
            number(low)
        ));
    }
    svg.push_str(&format!(
        "</svg><figcaption>Totals of {} submission(s), in tenths of the maximum ({} points).</figcaption></figure>\n",
        book.submissions.len(),
        number(book.max_total)
    ));
    svg
}

/// A submission's name as a relative link: anything but unreserved characters escaped.
fn percent_path(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
