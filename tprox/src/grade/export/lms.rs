//! Canvas and Moodle import a CSV of one row per student: a column that names the student and
//! a column of points. Canvas matches rows by a column named `SIS Login ID`, `SIS User ID` or
//! `ID` and takes other columns as assignments; Moodle asks, when importing, which column
//! identifies the user and which holds the grade. Both names are set in the grading file's
//! `[export]` section; the submission directory's name is the student's id.

use super::{cell, Output};
use crate::grade::gradebook::{number, Export, Gradebook};

pub(super) fn files(book: &Gradebook) -> Vec<Output> {
    vec![Output {
        path: "lms.csv".into(),
        text: lms_csv(book, &book.export),
    }]
}

/// The CSV that an LMS gradebook imports: one row per submission, its name and its total.
pub fn lms_csv(book: &Gradebook, export: &Export) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([&export.lms_id_column, &export.lms_score_column])
        .expect("writing to memory");
    for s in &book.submissions {
        out.write_record([cell(&s.name), number(s.total)])
            .expect("writing to memory");
    }
    String::from_utf8(out.into_inner().expect("writing to memory")).expect("CSV of UTF-8")
}

#[cfg(test)]
mod tests {
    use super::super::tests::book;
    use super::*;

    #[test]
    fn the_lms_csv_has_the_configured_columns_and_one_row_per_submission() {
        let book = book("1/1", &["alice", "bob"]);
        let export = Export {
            lms_id_column: "Username".into(),
            lms_score_column: "Proxy lab".into(),
            ..Export::default()
        };
        let text = lms_csv(&book, &export);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            ["Username", "Proxy lab"]
        );
        let rows: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect();
        let expected: Vec<Vec<String>> = book
            .submissions
            .iter()
            .map(|s| vec![s.name.clone(), number(s.total)])
            .collect();
        assert_eq!(rows, expected);
    }
}
