//! The gradebook as JSON, `gradebook.json`: the form that `grade merge` reads back.

use super::Output;
use crate::grade::gradebook::Gradebook;

pub(super) fn files(book: &Gradebook) -> Vec<Output> {
    vec![Output {
        path: "gradebook.json".into(),
        text: serde_json::to_string_pretty(book).expect("a gradebook serializes") + "\n",
    }]
}
