//! The matrix as Markdown (committed as `docs/compatibility.md`) and as one self-contained HTML
//! page (no external file, script or font), both rendered from [`Matrix`] alone, so that the
//! committed page can be rendered again from the committed JSON.

use super::model::{Cell, Matrix, ProxyColumn, Shown};
use crate::html::escape;
use crate::verdict::Verdict;

const LEGEND: &str = "✅ pass · ❌ a MUST case failed · ⚠️ a SHOULD case failed (a warning) · \
                      🔁 flaky (failed, then passed on a retry) · ➖ skipped (could not run here)";

/// The legend with the HTML page's marks.
const HTML_LEGEND: &str = "✓ pass · ✗ a MUST case failed · ⚠ a SHOULD case failed (a warning) · \
                           ↻ flaky (failed, then passed on a retry) · – skipped (could not run \
                           here)";

/// The one-line account of how the matrix was measured.
fn provenance(matrix: &Matrix) -> String {
    format!(
        "Measured by `tprox matrix` (tprox {}) starting {}, stall timeout {} s, seed {}: the \
         whole catalogue against each proxy, every case with a fresh instance.",
        matrix.tprox, matrix.started, matrix.stall_timeout_s, matrix.seed
    )
}

/// Text for a Markdown table cell or list item: one line, pipes escaped.
fn md(text: &str) -> String {
    text.replace('|', "\\|")
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

fn counts_line(proxy: &ProxyColumn) -> [usize; 4] {
    let counts = Matrix::counts(proxy);
    let n = |v| counts.get(&v).copied().unwrap_or(0);
    [
        n(Verdict::Pass),
        n(Verdict::Fail),
        n(Verdict::Warn),
        n(Verdict::Flaky) + n(Verdict::Skip),
    ]
}

pub fn markdown(matrix: &Matrix) -> String {
    let mut out = String::new();
    out.push_str("# Compatibility matrix\n\n");
    out.push_str(
        "What tprox's catalogue finds in real TCP proxies, each started by its profile with a \
         generated configuration (`tprox --list-profiles` shows how). Every cell that is not a \
         pass is explained below by the proxy's documented behaviour.\n\n",
    );
    out.push_str(&provenance(matrix));
    out.push_str("\n\n");
    out.push_str("| proxy | version | passed | failed | warnings | other |\n");
    out.push_str("|---|---|---:|---:|---:|---:|\n");
    for proxy in &matrix.proxies {
        match &proxy.setup_error {
            Some(error) => out.push_str(&format!(
                "| `{}` | {} | did not start: {} | | | |\n",
                proxy.profile,
                md(&proxy.version),
                md(error)
            )),
            None => {
                let [pass, fail, warn, other] = counts_line(proxy);
                out.push_str(&format!(
                    "| `{}` | {} | {pass} | {fail} | {warn} | {other} |\n",
                    proxy.profile,
                    md(&proxy.version)
                ));
            }
        }
    }
    out.push_str(&format!("\n{LEGEND}\n\n"));
    out.push_str("| case | level |");
    for proxy in &matrix.proxies {
        out.push_str(&format!(" {} |", proxy.profile));
    }
    out.push_str("\n|---|---|");
    out.push_str(&":-:|".repeat(matrix.proxies.len()));
    out.push('\n');
    for case in &matrix.cases {
        out.push_str(&format!("| `{}` | {} |", case.id, case.level));
        for proxy in &matrix.proxies {
            let mark = proxy.cells.get(&case.id).map_or("", |c| c.verdict.mark());
            out.push_str(&format!(" {mark} |"));
        }
        out.push('\n');
    }
    out.push_str("\n## Why each cell that is not a pass is what it is\n");
    for proxy in &matrix.proxies {
        let bad: Vec<(&super::model::CaseRow, &Cell)> = matrix
            .cases
            .iter()
            .filter_map(|case| Some((case, proxy.cells.get(&case.id)?)))
            .filter(|(_, cell)| cell.verdict != Verdict::Pass)
            .collect();
        if bad.is_empty() && proxy.setup_error.is_none() {
            continue;
        }
        out.push_str(&format!(
            "\n### {} ({})\n\n",
            proxy.profile,
            md(&proxy.version)
        ));
        if let Some(error) = &proxy.setup_error {
            out.push_str(&format!("- did not start: {}\n", md(error)));
        }
        for (case, cell) in bad {
            let why = match (cell.notes.is_empty(), cell.verdict.needs_note()) {
                (false, _) => md(&cell.notes.join("; ")),
                // A skipped case says why itself (what follows as "Observed").
                (true, false) => "not run here".to_string(),
                (true, true) => {
                    "**no documented explanation: a tprox bug to look into**".to_string()
                }
            };
            out.push_str(&format!(
                "- {} `{}` ({}): {why}.",
                cell.verdict.mark(),
                case.id,
                md(&case.name)
            ));
            if let Some(observed) = &cell.observed {
                out.push_str(&format!(" Observed: {}.", md(observed)));
            }
            out.push('\n');
        }
    }
    out
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .2em; }
p.meta { color: #555; margin: 0 0 1em; max-width: 60em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; vertical-align: top; }
thead th { background: #f4f4f4; position: sticky; top: 0; }
th small { display: block; font-weight: normal; color: #555; max-width: 12em; }
td { text-align: center; } td.case { text-align: left; white-space: nowrap; }
td.pass { background: #c8e6c9; } td.warn { background: #fff3b0; } td.flaky { background: #fff3b0; }
td.fail { background: #ffcdd2; } td.skip { background: #e0e0e0; } td.setup { background: #bdbdbd; }
td.num { text-align: right; }
details > summary { cursor: pointer; }
details div { text-align: left; max-width: 40em; font-size: 12px; }
details pre { white-space: pre-wrap; margin: .3em 0; }
p.note { background: #e3f2fd; padding: 2px 4px; margin: .3em 0; }
"#;

pub fn html(matrix: &Matrix) -> String {
    let mut page = String::new();
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<title>tprox compatibility matrix</title>\n<style>");
    page.push_str(STYLE);
    page.push_str("</style>\n</head>\n<body>\n<h1>tprox compatibility matrix</h1>\n");
    page.push_str(&format!(
        "<p class=\"meta\">{}</p>\n<p class=\"meta\">{}. Click a cell that is not a pass for \
         its diagnostic.</p>\n",
        escape(&provenance(matrix).replace('`', "")),
        escape(HTML_LEGEND)
    ));
    page.push_str(
        "<table id=\"proxies\">\n<thead><tr><th>proxy</th><th>version</th><th>passed</th>\
         <th>failed</th><th>warnings</th><th>other</th></tr></thead>\n<tbody>\n",
    );
    for proxy in &matrix.proxies {
        match &proxy.setup_error {
            Some(error) => page.push_str(&format!(
                "<tr><td class=\"case\">{}</td><td>{}</td><td class=\"setup\" colspan=\"4\">did \
                 not start: {}</td></tr>\n",
                escape(&proxy.profile),
                escape(&proxy.version),
                escape(error)
            )),
            None => {
                let [pass, fail, warn, other] = counts_line(proxy);
                page.push_str(&format!(
                    "<tr><td class=\"case\" title=\"{}\">{}</td><td>{}</td><td class=\"num\">{pass}</td>\
                     <td class=\"num\">{fail}</td><td class=\"num\">{warn}</td>\
                     <td class=\"num\">{other}</td></tr>\n",
                    escape(&proxy.about),
                    escape(&proxy.profile),
                    escape(&proxy.version)
                ));
            }
        }
    }
    page.push_str(
        "</tbody>\n</table>\n<table id=\"matrix\">\n<thead><tr><th>case</th><th>level</th>",
    );
    for proxy in &matrix.proxies {
        page.push_str(&format!(
            "<th>{}<small>{}</small></th>",
            escape(&proxy.profile),
            escape(&proxy.version)
        ));
    }
    page.push_str("</tr></thead>\n<tbody>\n");
    for case in &matrix.cases {
        page.push_str(&format!(
            "<tr><td class=\"case\" title=\"{}\"><code>{}</code> {}</td><td>{}</td>",
            escape(&case.rules),
            escape(&case.id),
            escape(&case.name),
            escape(&case.level)
        ));
        for proxy in &matrix.proxies {
            page.push_str(&cell_html(proxy, proxy.cells.get(&case.id)));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    page
}

fn cell_html(proxy: &ProxyColumn, cell: Option<&Cell>) -> String {
    let Some(cell) = cell else {
        let class = if proxy.setup_error.is_some() {
            "setup"
        } else {
            "skip"
        };
        return format!("<td class=\"{class}\"></td>");
    };
    let class = cell.verdict.label();
    if cell.verdict == Verdict::Pass {
        return format!("<td class=\"{class}\">{}</td>", cell.verdict.symbol());
    }
    let mut body = String::new();
    for note in &cell.notes {
        body.push_str(&format!("<p class=\"note\">{}</p>", escape(note)));
    }
    if cell.notes.is_empty() && cell.verdict.needs_note() {
        body.push_str("<p class=\"note\">no documented explanation: a tprox bug to look into</p>");
    }
    let mut text = String::new();
    for (label, value) in [
        ("expected", &cell.expected),
        ("observed", &cell.observed),
        ("usual cause", &cell.hint),
    ] {
        if let Some(value) = value {
            text.push_str(&format!("{label:<12}{value}\n"));
        }
    }
    if !cell.output.trim().is_empty() {
        text.push_str("proxy output (last lines):\n");
        for line in cell.output.lines() {
            text.push_str(&format!("  | {line}\n"));
        }
    }
    body.push_str(&format!("<pre>{}</pre>", escape(&text)));
    format!(
        "<td class=\"{class}\"><details><summary>{}</summary><div>{body}</div></details></td>",
        cell.verdict.symbol()
    )
}

#[cfg(test)]
mod tests {
    use super::super::model::tests::sample;
    use super::*;

    #[test]
    fn markdown_has_a_row_per_case_a_column_per_proxy_and_explains_failures() {
        let text = markdown(&sample());
        assert!(text.contains("| case | level | ref | slow |"), "{text}");
        assert!(
            text.contains("| `echo/single` | MUST | ✅ | ❌ |"),
            "{text}"
        );
        assert!(
            text.contains("| `latency/small-writes` | SHOULD | ✅ | ⚠️ |"),
            "{text}"
        );
        assert!(
            text.contains("`latency/small-writes` (Case latency/small-writes): no TCP_NODELAY.")
        );
        assert!(text.contains("`echo/single` (Case echo/single): **no documented explanation"));
        assert!(
            !text.contains("### ref"),
            "a proxy that passes everything needs no section"
        );
    }

    #[test]
    fn html_escapes_text_and_makes_failures_expandable() {
        let page = html(&sample());
        assert!(page.contains("<details><summary>✗</summary>"));
        assert!(
            page.contains("EOF &lt;early&gt;"),
            "observed text is escaped"
        );
        assert!(page.contains("title=\"slow &amp; co\""));
        assert!(!page.contains("<early>"));
        assert!(
            !page.contains("src=") && !page.contains("href="),
            "self-contained"
        );
    }
}
