//! The record a grading keeps of its finished submissions, so that a grading killed midway (a
//! node that reboots, a batch job at its time limit, Ctrl-C) resumes where it stopped
//! (`tprox grade --resume`) instead of starting again from zero.
//!
//! It lives in `OUT/journal/`: `grading.json` says what is being graded (the [`Key`]), and each
//! submission, as it finishes, gets a file of its own with its whole row, written to a
//! temporary name and renamed, so that a file there is always whole. A resumed grading checks
//! the key against its own settings, refuses with the difference if they are not the same, and
//! grades only the submissions that have no row.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::gradebook::Submission;

/// What must be the same for a grading to resume another: rows graded by another tprox, with
/// another grading file, seed, number of runs, share or sandbox would not belong in one
/// gradebook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// The tprox version.
    pub tprox: String,
    /// The grading file's digest (its text).
    pub grading_digest: String,
    pub seed: u64,
    pub repeat: u32,
    /// The share, "K/N".
    pub partition: String,
    /// How the submissions are boxed, as the gradebook says it.
    pub sandbox: String,
}

impl Key {
    /// The first setting in which `self` (the grading being resumed) and `now` differ, in
    /// words: why the grading cannot resume.
    fn difference(&self, now: &Key) -> Option<String> {
        let pairs = [
            ("tprox's version", &self.tprox, &now.tprox),
            (
                "the grading file (its text)",
                &self.grading_digest,
                &now.grading_digest,
            ),
            ("the share (--partition)", &self.partition, &now.partition),
            ("the sandbox", &self.sandbox, &now.sandbox),
        ];
        for (what, then, now) in pairs {
            if then != now {
                return Some(format!("{what} changed: {then} then, {now} now"));
            }
        }
        if self.seed != now.seed {
            return Some(format!(
                "the seed changed: {} then, {} now",
                self.seed, now.seed
            ));
        }
        (self.repeat != now.repeat)
            .then(|| format!("--repeat changed: {} then, {} now", self.repeat, now.repeat))
    }
}

/// An open journal, recording the submissions of one grading as they finish.
pub struct Journal {
    dir: PathBuf,
}

/// The journal's directory in the output directory `out`.
fn dir_in(out: &Path) -> PathBuf {
    out.join("journal")
}

impl Journal {
    /// Starts the journal of a new grading in `out`, forgetting any earlier one there.
    pub fn start(out: &Path, key: &Key) -> Result<Journal, String> {
        let dir = dir_in(out);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("cannot clear {}: {e}", dir.display()))
            }
            _ => {}
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let journal = Journal { dir };
        let text = serde_json::to_string_pretty(key).expect("a key serializes");
        journal.write_whole("grading.json", &text)?;
        Ok(journal)
    }

    /// Opens the journal of the grading in `out` to resume it with `key`: the rows it holds
    /// (`None` when there is no grading there: a batch job's first run, before any requeue),
    /// or why it cannot resume (graded otherwise).
    pub fn resume(out: &Path, key: &Key) -> Result<Option<(Journal, Vec<Submission>)>, String> {
        let dir = dir_in(out);
        let key_path = dir.join("grading.json");
        let text = match std::fs::read_to_string(&key_path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("--resume: cannot read {}: {e}", key_path.display())),
            Ok(text) => text,
        };
        let then: Key = serde_json::from_str(&text)
            .map_err(|e| format!("--resume: {} is damaged: {e}", key_path.display()))?;
        if let Some(difference) = then.difference(key) {
            return Err(format!(
                "--resume: the grading in {} cannot be resumed: {difference}. Grade it again \
                 without --resume (or with the same settings)",
                out.display()
            ));
        }
        let mut finished = Vec::new();
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| format!("--resume: cannot read {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // The key, and a row that was being written when the grading died.
            if !name.starts_with("row-") || !name.ends_with(".json") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path())
                .map_err(|e| format!("--resume: cannot read {}: {e}", entry.path().display()))?;
            let row: Submission = serde_json::from_str(&text)
                .map_err(|e| format!("--resume: {} is damaged: {e}", entry.path().display()))?;
            finished.push(row);
        }
        Ok(Some((Journal { dir }, finished)))
    }

    /// Records a finished submission, the `place`-th of the class.
    pub fn record(&self, place: usize, row: &Submission) -> Result<(), String> {
        let text = serde_json::to_string(row).expect("a row serializes");
        self.write_whole(&format!("row-{place}.json"), &text)
    }

    /// Writes `text` to `name`: to a temporary file first, flushed to the disk, and renamed,
    /// so that `name` holds either nothing or all of it whenever the grading dies.
    fn write_whole(&self, name: &str, text: &str) -> Result<(), String> {
        use std::io::Write;
        let path = self.dir.join(name);
        let partial = self.dir.join(format!(".{name}.partial"));
        let written = std::fs::File::create(&partial).and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
        written
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key {
            tprox: "0.1.0".into(),
            grading_digest: "abc".into(),
            seed: 1,
            repeat: 1,
            partition: "1/1".into(),
            sandbox: "none".into(),
        }
    }

    fn row(name: &str) -> Submission {
        serde_json::from_value(serde_json::json!({
            "name": name, "path": format!("subs/{name}"), "status": "graded", "error": null,
            "total": 3.0, "duration_s": 1.5, "build": null, "results": []
        }))
        .unwrap()
    }

    #[test]
    fn rows_recorded_are_resumed_and_a_changed_setting_is_refused_by_name() {
        let out = tempfile::tempdir().unwrap();
        let journal = Journal::start(out.path(), &key()).unwrap();
        journal.record(0, &row("ann")).unwrap();
        journal.record(2, &row("cat")).unwrap();
        // A row being written when the grading died is not taken.
        std::fs::write(dir_in(out.path()).join(".row-1.json.partial"), "{\"na").unwrap();
        let (_, rows) = Journal::resume(out.path(), &key()).unwrap().unwrap();
        let mut names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["ann", "cat"]);

        for (change, named) in [
            (Key { seed: 2, ..key() }, "the seed changed: 1 then, 2 now"),
            (
                Key {
                    grading_digest: "def".into(),
                    ..key()
                },
                "the grading file",
            ),
            (
                Key {
                    tprox: "0.2.0".into(),
                    ..key()
                },
                "tprox's version changed",
            ),
            (Key { repeat: 3, ..key() }, "--repeat changed"),
        ] {
            let why = Journal::resume(out.path(), &change).err().unwrap();
            assert!(why.contains(named), "{why}");
        }
        // A new grading forgets the old rows.
        Journal::start(out.path(), &key()).unwrap();
        assert!(Journal::resume(out.path(), &key())
            .unwrap()
            .unwrap()
            .1
            .is_empty());
        // Nothing to resume: a grading of everything begins.
        let nothing = tempfile::tempdir().unwrap();
        assert!(Journal::resume(nothing.path(), &key()).unwrap().is_none());
    }
}
