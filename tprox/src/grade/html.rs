//! The gradebook as one self-contained HTML page: a matrix of submissions × cases, each cell
//! coloured by outcome, each failure expandable to its diagnostic, rows sortable by total or
//! name. No external file, script or font: the page is mailed, archived and opened offline.

use super::gradebook::{number, Gradebook, Status};
use crate::html::escape;

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
td { text-align: center; } td.name, td.status { text-align: left; white-space: nowrap; }
details > summary { cursor: pointer; }
details pre { text-align: left; white-space: pre-wrap; max-width: 40em; font-size: 12px; }
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

pub fn render(book: &Gradebook) -> String {
    let mut page = String::new();
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<title>tprox gradebook</title>\n<style>");
    page.push_str(STYLE);
    page.push_str("</style>\n</head>\n<body>\n<h1>tprox gradebook</h1>\n");
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
    page.push_str(
        "<p class=\"meta\">Click a column title to sort; click a red cell for the diagnostic. \
         Green: passed · yellow: flaky (passed on a retry) · red: failed · grey: skipped or \
         not run.</p>\n",
    );
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
    for s in &book.submissions {
        page.push_str(&format!(
            "<tr data-name=\"{}\" data-total=\"{}\"><td class=\"name\" title=\"{}\">{}</td>",
            escape(&s.name),
            s.total,
            escape(&s.path),
            escape(&s.name)
        ));
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
            (None, _) => format!(
                "<td class=\"status\">{} in {:.0} s</td>",
                s.status.label(),
                s.duration_s
            ),
        };
        page.push_str(&status);
        page.push_str(&format!("<td class=\"total\">{}</td>", number(s.total)));
        for (result, case) in s.results.iter().zip(&book.cases) {
            let shown = format!("{}/{}", number(result.points), number(case.points));
            match &result.message {
                Some(message) if s.status == Status::Graded => page.push_str(&format!(
                    "<td class=\"{}\" title=\"{}\"><details><summary>{shown}</summary><pre>{}</pre></details></td>",
                    escape(&result.outcome),
                    escape(&result.case),
                    escape(message)
                )),
                _ => page.push_str(&format!(
                    "<td class=\"{}\" title=\"{}: {}\">{shown}</td>",
                    escape(&result.outcome),
                    escape(&result.case),
                    escape(&result.outcome)
                )),
            }
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody>\n</table>\n<script>");
    page.push_str(SCRIPT);
    page.push_str("</script>\n</body>\n</html>\n");
    page
}
