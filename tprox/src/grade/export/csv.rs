//! The gradebook as CSV, `gradebook.csv`: for spreadsheets and the course's own tools.

use super::{cell, Output};
use crate::grade::gradebook::{number, Gradebook};
use crate::verdict::Verdict;

pub(super) fn files(book: &Gradebook) -> Vec<Output> {
    vec![Output {
        path: "gradebook.csv".into(),
        text: render(book),
    }]
}

/// The CSV form: submission, status, total, max, one column of points per case, and the
/// failures in one cell (`case: message | case: message`).
pub fn render(book: &Gradebook) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header = vec![
        "submission".to_string(),
        "status".into(),
        "total".into(),
        "max".into(),
    ];
    let repeated = book.repeat > 1;
    if repeated {
        // Each run's total, and the cases whose verdict changed between runs.
        header.extend(["run totals".to_string(), "unstable cases".into()]);
    }
    header.extend(book.cases.iter().map(|c| c.id.clone()));
    header.push("failures".into());
    out.write_record(&header).expect("writing to memory");
    for s in &book.submissions {
        let mut row = vec![
            cell(&s.name),
            s.status.label().to_string(),
            number(s.total),
            number(book.max_total),
        ];
        if repeated {
            let totals: Vec<String> = s.run_totals.iter().map(|t| number(*t)).collect();
            let unstable: Vec<&str> = s
                .results
                .iter()
                .filter(|r| r.unstable.is_some())
                .map(|r| r.case.as_str())
                .collect();
            row.extend([totals.join(" "), unstable.join(" ")]);
        }
        row.extend(s.results.iter().map(|r| number(r.points)));
        let mut failures: Vec<String> = s.error.iter().map(|e| one_line(Some(e))).collect();
        failures.extend(
            s.results
                .iter()
                .filter(|r| r.outcome == Some(Verdict::Fail))
                .map(|r| format!("{}: {}", r.case, one_line(r.message.as_deref()))),
        );
        row.push(cell(&failures.join(" | ")));
        out.write_record(&row).expect("writing to memory");
    }
    String::from_utf8(out.into_inner().expect("writing to memory")).expect("CSV of UTF-8")
}

fn one_line(text: Option<&str>) -> String {
    text.unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::gradebook::tests::book;

    #[test]
    fn csv_has_a_column_per_case_and_quotes_messages() {
        let csv = render(&book("1/1", &["amy"]));
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(
            header,
            [
                "submission",
                "status",
                "total",
                "max",
                "echo/single",
                "failures"
            ]
        );
        let row = reader.records().next().unwrap().unwrap();
        assert_eq!(&row[0], "amy");
        assert_eq!(&row[3], "2");
        assert_eq!(
            &row[5],
            "echo/single: expected: an echo; observed: \"nothing\", at all"
        );
    }
}
