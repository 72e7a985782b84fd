//! The one place where the end of a command becomes tprox's exit status. Every command returns
//! `Result<Conclusion, Error>`: what the run concluded about the proxy, or why it could not
//! conclude. [`exit_status`] prints the error (once, prefixed with the command's name) and picks
//! the status; nothing else in tprox chooses one.

use std::path::Path;

/// tprox's exit statuses, listed in `--help` and README (a test checks that the three agree).
pub mod exit {
    /// Every selected case passed (SHOULD failures are only warnings without `--strict`).
    pub const PASSED: u8 = 0;
    /// At least one case failed: the proxy does not conform.
    pub const FAILED: u8 = 1;
    /// Bad usage, or the proxy could not be set up (did not start, exited, never listened).
    pub const SETUP: u8 = 2;
    /// The filters selected no case at all.
    pub const NOTHING_SELECTED: u8 = 3;
    /// The run finished, but a report, gradebook or table could not be written.
    pub const OUTPUT: u8 = 4;
    /// tprox was interrupted (Ctrl-C); every proxy it started was stopped.
    pub const INTERRUPTED: u8 = 130;
}

/// What a command that ran to its end concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conclusion {
    /// Everything it judged conforms (or there was nothing to judge: `--list`, a merge).
    Passed,
    /// Something it judged does not conform.
    Failed,
}

impl Conclusion {
    /// `Failed` when `failed` is true.
    pub fn failed_if(failed: bool) -> Self {
        if failed {
            Conclusion::Failed
        } else {
            Conclusion::Passed
        }
    }
}

/// Why a command could not conclude.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line, a file it names, or a name in it is wrong; the text says how to fix it.
    #[error("{0}")]
    Usage(String),
    /// What the command needs could not be set up: the proxy did not start, a program is
    /// missing, the machine refuses something.
    #[error("{0}")]
    Setup(String),
    /// The filters selected no case.
    #[error("no case selected; see tprox --list for the case ids")]
    NothingSelected,
    /// An output the user asked for could not be written; the work itself was done.
    #[error("{0}")]
    Output(String),
    /// Interrupted by a signal; the handler has already said so and stopped every proxy.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// An [`Error::Output`]: `what` ("the report") could not be written to `path`.
    pub fn output(what: &str, path: &Path, source: std::io::Error) -> Self {
        Error::Output(format!(
            "cannot write {what} to {}: {source}",
            path.display()
        ))
    }

    fn status(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Setup(_) => exit::SETUP,
            Error::NothingSelected => exit::NOTHING_SELECTED,
            Error::Output(_) => exit::OUTPUT,
            Error::Interrupted => exit::INTERRUPTED,
        }
    }
}

/// What a command returns.
pub type Result<T = Conclusion> = std::result::Result<T, Error>;

/// The exit status of a command's end; prints the error, if any, as `COMMAND: MESSAGE`.
pub fn exit_status(command: &str, result: Result) -> u8 {
    match result {
        Ok(Conclusion::Passed) => exit::PASSED,
        Ok(Conclusion::Failed) => exit::FAILED,
        Err(Error::Interrupted) => exit::INTERRUPTED,
        Err(error) => {
            eprintln!("{command}: {error}");
            error.status()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ending_has_its_status() {
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let cases = [
            (Ok(Conclusion::Passed), exit::PASSED),
            (Ok(Conclusion::Failed), exit::FAILED),
            (Err(Error::Usage("bad".into())), exit::SETUP),
            (Err(Error::Setup("no proxy".into())), exit::SETUP),
            (Err(Error::NothingSelected), exit::NOTHING_SELECTED),
            (
                Err(Error::output("the report", Path::new("/x"), io())),
                exit::OUTPUT,
            ),
            (Err(Error::Interrupted), exit::INTERRUPTED),
        ];
        for (result, status) in cases {
            assert_eq!(exit_status("tprox test", result), status);
        }
    }
}
