//! The grading file: how to build and start a submission, its limits, and what each case is
//! worth. TOML, checked strictly: an unknown key is an error, because a misspelt limit that is
//! silently ignored would grade a whole class under the wrong rules.
//!
//! ```toml
//! [build]                       # optional: no build step without it
//! command = "make"              # run with `sh -c` in the submission's scratch copy
//! timeout = "5m"
//!
//! [run]
//! start = "./tcpproxy {dest_host} {dest_port} {listen_port}"
//! stall_timeout = "2s"
//! time_limit = "3m"             # wall clock for all of one submission's cases
//! # front = "socks5"            # a SOCKS5 or HTTP CONNECT lab: socks5[:USER:PASS],
//! #                             # connect[:USER:PASS]; adds the front/ cases
//! # proxy_protocol = "send:v2"  # the proxies speak the PROXY protocol: send:v1, send:v2
//! #                             # (to the destination), accept:v1, accept:v2 (from their
//! #                             # clients), or both joined by a comma; adds its cases
//! # udp = true                  # a UDP forwarder lab: {listen_port} is a UDP port, graded
//! #                             # on the UDP catalogue (udp/...) alone
//!
//! [limits]                      # per proxy process
//! address_space_mib = 4096
//! open_files = 1024
//! cpu_seconds = 120
//! memory_mib = 2048             # all of one submission's processes together (cgroups)
//!
//! [points]                      # per case; the longest matching pattern wins
//! "echo/" = 2
//! "bulk/chain" = 5
//! "*" = 1
//!
//! [sandbox]                     # optional: the kernel sandbox around each submission
//! mode = "auto"                 # namespaces where the machine has them; "namespaces", "none"
//! build_network = false         # may the build reach a package registry? (never the proxy)
//! disk_mib = 1024               # its writable space
//! processes = 4096              # processes and threads at once, under its own uid
//! share = ["../course-tools"]   # read-only for every submission ($TPROX_SHARE), and the
//!                               # toolchains outside /usr that builds need
//! io_uring = false              # may its processes use io_uring?
//!
//! ["expect"."timeout/idle"]      # optional: a deviation the course accepts, in the format
//! expect = "fail"               # of tprox --expect (tprox-expect.toml): "fail" earns the
//! reason = "not taught this year"  # case's points either way, "skip" neither runs nor grades
//!
//! [export]                      # optional: the exports for courses' tools
//! lms_id_column = "SIS Login ID"   # the LMS CSV's column of submission names
//! lms_score_column = "Proxy lab"   # and of totals
//! gradescope_visibility = "after_published"  # visible, hidden, after_due_date
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::gradebook::{Export, Visibility};
use crate::case::Case;
use crate::expect::Expectations;
use crate::proxy::Limits;
use crate::runner::defaults;
use crate::select::Pattern;

/// A parsed and checked grading file.
#[derive(Debug, Clone)]
pub struct Grading {
    pub path: PathBuf,
    /// A digest of the file's text: partial gradebooks merge only if they were graded by the
    /// same file.
    pub digest: String,
    pub build: Option<Build>,
    /// The start command's words, with `{submission}` and `{scratch}` still in them.
    pub start: Vec<String>,
    /// The handshake every client does first, for a class of SOCKS5 or HTTP CONNECT proxies.
    pub front: Option<tprox_core::front::Front>,
    /// `[run] proxy_protocol`: the submissions speak the PROXY protocol, sending it to the
    /// destination, accepting it from their clients, or both.
    pub proxy_protocol: Option<tprox_core::proxy_protocol::Mode>,
    /// `[run] udp`: the submissions forward UDP, and are graded on the UDP catalogue.
    pub udp: bool,
    pub stall: Duration,
    pub startup_timeout: Duration,
    pub time_limit: Duration,
    pub jobs: usize,
    pub seed: u64,
    pub retries: u32,
    pub connections: Option<usize>,
    pub bulk_kib: Option<usize>,
    pub limits: Limits,
    /// The limits of a build in the sandbox: only its address space (a compiler needs more
    /// than a proxy; it also has the build's timeout and the box's processes and space).
    pub build_limits: Limits,
    /// The memory all of one submission's processes may use together, in MiB (a cgroup's
    /// ceiling, where the machine has cgroups tprox may use).
    pub memory_mib: u64,
    pub sandbox: SandboxSettings,
    /// The graded cases, in catalogue order, with their points.
    pub cases: Vec<(&'static Case, f64)>,
    /// The deviations the course accepts (`[expect]`, the format of `tprox --expect`): a
    /// case expected to fail earns its points failed or not; one to skip is not graded.
    pub accepted: Expectations,
    pub export: Export,
}

/// The build step.
#[derive(Debug, Clone)]
pub struct Build {
    pub command: String,
    pub timeout: Duration,
}

impl Grading {
    /// Reads and checks the grading file at `path`. Errors say what is wrong and where.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the grading file {}: {e}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, String> {
        let file: File =
            toml::from_str(text).map_err(|e| format!("grading file {}: {e}", path.display()))?;
        let problem = |what: String| format!("grading file {}: {what}", path.display());
        let start = match file.run.start {
            Words::One(line) => shlex::split(&line)
                .ok_or_else(|| problem(format!("[run] start: unbalanced quotes in '{line}'")))?,
            Words::Many(words) => words,
        };
        if start.is_empty() {
            return Err(problem("[run] start is empty: give the command that starts a submission's proxy, such as \"./tcpproxy {dest_host} {dest_port} {listen_port}\"".into()));
        }
        let build =
            match file.build {
                Some(build) if build.command.trim().is_empty() => return Err(problem(
                    "[build] command is empty: give a command, or leave out the [build] section"
                        .into(),
                )),
                Some(build) => Some(Build {
                    command: build.command,
                    timeout: build
                        .timeout
                        .map_or(Ok(Duration::from_secs(300)), |d| d.get("[build] timeout"))
                        .map_err(problem)?,
                }),
                None => None,
            };
        let seconds = |value: Option<Seconds>, key: &str, default: Duration| {
            value.map_or(Ok(default), |d| d.get(key)).map_err(problem)
        };
        let front = match &file.run.front {
            Some(text) => Some(
                text.parse()
                    .map_err(|e| problem(format!("[run] front: {e}")))?,
            ),
            None => None,
        };
        let proxy_protocol = match &file.run.proxy_protocol {
            Some(text) => Some(
                text.parse()
                    .map_err(|e| problem(format!("[run] proxy_protocol: {e}")))?,
            ),
            None => None,
        };
        let udp = file.run.udp.unwrap_or(false);
        if udp && (front.is_some() || proxy_protocol.is_some()) {
            return Err(problem(
                "[run] udp = true with a front or proxy_protocol: those are TCP's; a UDP class \
                 is graded on the UDP catalogue alone"
                    .into(),
            ));
        }
        // A front's class is graded on the front cases too, a sender's on the header cases, a
        // UDP forwarder's on the UDP cases alone.
        let catalogue = tprox_core::cases::applicable(front.as_ref(), proxy_protocol, udp);
        let ids: Vec<&str> = catalogue.iter().map(|case| case.id).collect();
        let accepted = Expectations::from_entries(file.expect, &ids)
            .map_err(|e| problem(format!("[expect] {e}")))?;
        let mut cases = points(&file.points, &catalogue).map_err(problem)?;
        let skipped: Vec<&str> = accepted.skipped().collect();
        cases.retain(|(case, _)| !skipped.contains(&case.id));
        let limits = file.limits.unwrap_or_default();
        let sandbox = sandbox_settings(file.sandbox, path).map_err(problem)?;
        Ok(Grading {
            path: path.to_path_buf(),
            digest: digest(text),
            build,
            start,
            front,
            proxy_protocol,
            udp,
            stall: seconds(
                file.run.stall_timeout,
                "[run] stall_timeout",
                defaults::STALL,
            )?,
            startup_timeout: seconds(
                file.run.startup_timeout,
                "[run] startup_timeout",
                defaults::STARTUP_TIMEOUT,
            )?,
            time_limit: seconds(
                file.run.time_limit,
                "[run] time_limit",
                Duration::from_secs(300),
            )?,
            jobs: file.run.jobs.unwrap_or(8).max(1),
            seed: file.run.seed.unwrap_or(1),
            retries: file.run.retries.unwrap_or(0),
            connections: file.run.connections,
            bulk_kib: file.run.bulk_kib,
            limits: Limits {
                address_space: Some(limits.address_space_mib.unwrap_or(4096) * 1024 * 1024),
                open_files: Some(limits.open_files.unwrap_or(1024)),
                cpu_seconds: Some(limits.cpu_seconds.unwrap_or(120)),
            },
            build_limits: Limits {
                address_space: Some(limits.build_address_space_mib.unwrap_or(8192) * 1024 * 1024),
                ..Limits::default()
            },
            memory_mib: match limits.memory_mib {
                Some(0) => {
                    return Err(problem(
                        "[limits] memory_mib = 0: give a positive number".into(),
                    ))
                }
                value => value.unwrap_or(2048),
            },
            sandbox,
            cases,
            accepted,
            export: export(file.export).map_err(problem)?,
        })
    }

    /// The most a submission can score.
    pub fn max_total(&self) -> f64 {
        self.cases.iter().map(|(_, points)| points).sum()
    }
}

/// Assigns points to cases: each case takes the points of the longest pattern that matches
/// its id; a case no pattern matches is not graded (and not run).
fn points(
    table: &BTreeMap<String, f64>,
    catalogue: &[&'static Case],
) -> Result<Vec<(&'static Case, f64)>, String> {
    if table.is_empty() {
        return Err("[points] is empty: give each case or group its points, such as \"*\" = 1 for one point per case".into());
    }
    let mut patterns = Vec::new();
    for (key, &value) in table {
        if !value.is_finite() || value < 0.0 {
            return Err(format!(
                "[points] \"{key}\" = {value}: points must be zero or more"
            ));
        }
        let pattern = Pattern::parse(key).map_err(|e| format!("[points] {e}"))?;
        if !catalogue.iter().any(|case| pattern.matches(case.id)) {
            return Err(format!(
                "[points] \"{key}\" matches no case (see tprox --list for the case ids)"
            ));
        }
        patterns.push((pattern, key.len(), value));
    }
    let graded: Vec<_> = catalogue
        .iter()
        .filter_map(|&case| {
            patterns
                .iter()
                .filter(|(pattern, _, _)| pattern.matches(case.id))
                .max_by_key(|(_, len, _)| *len)
                .map(|&(_, _, value)| (case, value))
        })
        .collect();
    Ok(graded)
}

/// FNV-1a of the text, in hex: enough to tell two grading files apart.
fn digest(text: &str) -> String {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    build: Option<BuildSection>,
    run: RunSection,
    limits: Option<LimitsSection>,
    #[serde(default)]
    points: BTreeMap<String, f64>,
    #[serde(default)]
    expect: BTreeMap<String, tprox_core::expect::Expectation>,
    export: Option<ExportSection>,
    sandbox: Option<SandboxSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxSection {
    mode: Option<SandboxMode>,
    build_network: Option<bool>,
    disk_mib: Option<u64>,
    processes: Option<u64>,
    #[serde(default)]
    share: Vec<PathBuf>,
    io_uring: Option<bool>,
}

/// The `[sandbox]` settings; shared places are taken relative to the grading file and must
/// exist (a misspelt one would fail every build in the same puzzling way).
fn sandbox_settings(
    section: Option<SandboxSection>,
    file: &Path,
) -> Result<SandboxSettings, String> {
    let section = section.unwrap_or_default();
    let default = SandboxSettings::default();
    let base = file.parent().unwrap_or(Path::new("."));
    let mut share = Vec::new();
    for place in section.share {
        let resolved = base.join(&place).canonicalize().map_err(|e| {
            format!(
                "[sandbox] share: cannot find {} ({e}); give paths relative to the grading file",
                place.display()
            )
        })?;
        share.push(resolved);
    }
    let positive = |value: Option<u64>, key: &str, default: u64| match value {
        Some(0) => Err(format!("[sandbox] {key} = 0: give a positive number")),
        value => Ok(value.unwrap_or(default)),
    };
    Ok(SandboxSettings {
        mode: section.mode.unwrap_or(default.mode),
        build_network: section.build_network.unwrap_or(default.build_network),
        disk_mib: positive(section.disk_mib, "disk_mib", default.disk_mib)?,
        processes: positive(section.processes, "processes", default.processes)?,
        share,
        io_uring: section.io_uring.unwrap_or(default.io_uring),
    })
}

/// `[sandbox] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Namespaces where the machine allows them; otherwise grade without, loudly.
    #[default]
    Auto,
    /// Namespaces or nothing: grading refuses to start without them.
    Namespaces,
    /// No sandbox: process groups, rlimits and the orphan sweep only (contain accidents, not
    /// intent).
    None,
}

/// The `[sandbox]` settings of a grading file.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxSettings {
    pub mode: SandboxMode,
    /// Whether the build may use the machine's network (a package registry). The proxy never
    /// may.
    pub build_network: bool,
    /// The size of a submission's writable space, in MiB (its scratch copy, what it builds).
    pub disk_mib: u64,
    /// How many processes the submission may run at once (RLIMIT_NPROC under its own uid).
    pub processes: u64,
    /// Directories or files (absolute) every submission may read: course files, prebuilt tools,
    /// toolchains outside `/usr`.
    pub share: Vec<PathBuf>,
    /// Whether the seccomp filter lets io_uring through: a second system call interface that
    /// the filter cannot inspect, denied unless a course needs it.
    pub io_uring: bool,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            mode: SandboxMode::Auto,
            build_network: false,
            disk_mib: 1024,
            processes: 4096,
            share: Vec::new(),
            io_uring: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportSection {
    lms_id_column: Option<String>,
    lms_score_column: Option<String>,
    gradescope_visibility: Option<Visibility>,
}

/// The `[export]` settings, defaults where the file says nothing.
fn export(section: Option<ExportSection>) -> Result<Export, String> {
    let section = section.unwrap_or_default();
    for (key, value) in [
        ("lms_id_column", &section.lms_id_column),
        ("lms_score_column", &section.lms_score_column),
    ] {
        if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
            return Err(format!(
                "[export] {key} is empty: give the column's name as the LMS expects it, or leave the key out"
            ));
        }
    }
    let default = Export::default();
    Ok(Export {
        lms_id_column: section.lms_id_column.unwrap_or(default.lms_id_column),
        lms_score_column: section.lms_score_column.unwrap_or(default.lms_score_column),
        gradescope_visibility: section
            .gradescope_visibility
            .unwrap_or(default.gradescope_visibility),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildSection {
    command: String,
    timeout: Option<Seconds>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunSection {
    start: Words,
    front: Option<String>,
    proxy_protocol: Option<String>,
    udp: Option<bool>,
    stall_timeout: Option<Seconds>,
    startup_timeout: Option<Seconds>,
    time_limit: Option<Seconds>,
    jobs: Option<usize>,
    seed: Option<u64>,
    retries: Option<u32>,
    connections: Option<usize>,
    bulk_kib: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    address_space_mib: Option<u64>,
    open_files: Option<u64>,
    cpu_seconds: Option<u64>,
    build_address_space_mib: Option<u64>,
    memory_mib: Option<u64>,
}

/// A command as one shell-like line or as a list of words.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Words {
    One(String),
    Many(Vec<String>),
}

/// A duration: a number of seconds, or text such as "90s", "5m", "1m 30s".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(f64),
    Text(String),
}

impl Seconds {
    fn get(&self, key: &str) -> Result<Duration, String> {
        let duration = match self {
            Seconds::Number(secs) if secs.is_finite() && *secs > 0.0 => {
                Some(Duration::from_secs_f64(*secs))
            }
            Seconds::Number(_) => None,
            Seconds::Text(text) => humantime::parse_duration(text)
                .ok()
                .filter(|d| !d.is_zero()),
        };
        duration.ok_or_else(|| {
            format!("{key}: expected a positive duration, such as 90, \"90s\" or \"5m\"")
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::CATALOGUE;

    fn parse(text: &str) -> Result<Grading, String> {
        Grading::parse(text, Path::new("grading.toml"))
    }

    /// A valid grading file, for tests elsewhere.
    pub(crate) fn example() -> Grading {
        parse(&format!("{MINIMAL}[points]\n\"*\" = 1\n")).unwrap()
    }

    const MINIMAL: &str = "[run]\nstart = \"./tcpproxy\"\n";

    #[test]
    fn the_longest_matching_pattern_sets_a_cases_points() {
        let grading = parse(&format!(
            "{MINIMAL}[points]\n\"*\" = 1\n\"echo/\" = 2\n\"echo/single\" = 5\n"
        ))
        .unwrap();
        let points = |id: &str| grading.cases.iter().find(|(c, _)| c.id == id).unwrap().1;
        assert_eq!(points("echo/single"), 5.0);
        assert_eq!(points("echo/chain-2"), 2.0);
        assert_eq!(points("bulk/chain-20"), 1.0);
        assert_eq!(grading.cases.len(), CATALOGUE.len());
    }

    #[test]
    fn a_front_class_is_graded_on_the_front_cases_too() {
        let plain = example();
        assert!(plain.front.is_none());
        assert!(plain.cases.iter().all(|(c, _)| !c.id.starts_with("front/")));
        let grading = parse(&format!(
            "{MINIMAL}front = \"socks5:alice:pw\"\n[points]\n\"*\" = 1\n\"front/\" = 3\n"
        ))
        .unwrap();
        assert_eq!(
            grading.front.as_ref().map(|f| f.spelled()).as_deref(),
            Some("socks5:alice:pw")
        );
        let mut front_cases = grading
            .cases
            .iter()
            .filter(|(c, _)| c.id.starts_with("front/"));
        assert_eq!(
            front_cases.clone().count(),
            tprox_core::cases::FRONT_CASES.len()
        );
        assert!(front_cases.all(|(_, points)| *points == 3.0));
        let error = parse(&format!(
            "{MINIMAL}front = \"socks4\"\n[points]\n\"*\" = 1\n"
        ))
        .unwrap_err();
        assert!(error.contains("[run] front"), "{error}");
        // Without a front, a front pattern matches nothing, and says so.
        let error = parse(&format!("{MINIMAL}[points]\n\"front/\" = 1\n")).unwrap_err();
        assert!(error.contains("matches no case"), "{error}");
    }

    #[test]
    fn a_udp_class_is_graded_on_the_udp_cases_alone() {
        let grading = parse(&format!("{MINIMAL}udp = true\n[points]\n\"*\" = 1\n")).unwrap();
        assert!(grading.udp);
        assert!(grading.cases.iter().all(|(c, _)| c.id.starts_with("udp/")));
        assert_eq!(grading.cases.len(), tprox_core::cases::UDP_CATALOGUE.len());
        let error = parse(&format!(
            "{MINIMAL}udp = true\nfront = \"socks5\"\n[points]\n\"*\" = 1\n"
        ))
        .unwrap_err();
        assert!(error.contains("[run] udp = true with a front"), "{error}");
        // A TCP class has no UDP case to give points to.
        let error = parse(&format!("{MINIMAL}[points]\n\"udp/\" = 1\n")).unwrap_err();
        assert!(error.contains("matches no case"), "{error}");
    }

    /// `[expect]` takes tprox --expect's entries: "skip" removes a case from the grading, an
    /// entry for no case is refused by name.
    #[test]
    fn a_course_accepts_deviations_in_the_expectations_format() {
        let grading = parse(&format!(
            "{MINIMAL}[points]\n\"*\" = 1\n\
             [expect.\"timeout/idle\"]\nexpect = \"fail\"\nreason = \"not taught this year\"\n\
             [expect.\"bulk/chain-20\"]\nexpect = \"skip\"\nreason = \"too slow for the lab machines\"\n"
        ))
        .unwrap();
        assert_eq!(
            grading
                .accepted
                .get("timeout/idle")
                .map(|e| e.reason.as_str()),
            Some("not taught this year")
        );
        assert!(grading.cases.iter().any(|(c, _)| c.id == "timeout/idle"));
        assert!(!grading.cases.iter().any(|(c, _)| c.id == "bulk/chain-20"));
        let wrong = parse(&format!(
            "{MINIMAL}[points]\n\"*\" = 1\n\
             [expect.\"timeout/idel\"]\nexpect = \"fail\"\nreason = \"x\"\n"
        ))
        .unwrap_err();
        assert!(
            wrong.contains("[expect]") && wrong.contains("\"timeout/idel\""),
            "{wrong}"
        );
    }

    /// A class of PROXY protocol senders is graded on the header cases too; a mode that is
    /// none is refused with the ones that are.
    #[test]
    fn a_class_of_proxy_protocol_senders_is_graded_on_the_header_cases_too() {
        let senders =
            parse("[run]\nstart = \"./p\"\nproxy_protocol = \"send:v2\"\n[points]\n\"*\" = 1\n")
                .unwrap();
        assert!(senders.proxy_protocol.is_some());
        assert!(senders
            .cases
            .iter()
            .any(|(case, _)| case.id == "proxy-protocol/header"));
        // Receivers are graded on the receiving cases, and not on the sending ones.
        let receivers =
            parse("[run]\nstart = \"./p\"\nproxy_protocol = \"accept:v1\"\n[points]\n\"*\" = 1\n")
                .unwrap();
        let ids: Vec<&str> = receivers.cases.iter().map(|(case, _)| case.id).collect();
        assert!(ids.contains(&"proxy-protocol/split-header"), "{ids:?}");
        assert!(!ids.contains(&"proxy-protocol/header"), "{ids:?}");
        assert!(!example()
            .cases
            .iter()
            .any(|(case, _)| case.id.starts_with("proxy-protocol/")));
        let wrong =
            parse("[run]\nstart = \"./p\"\nproxy_protocol = \"accept:v9\"\n[points]\n\"*\" = 1\n")
                .unwrap_err();
        assert!(
            wrong.contains("[run] proxy_protocol") && wrong.contains("send:v1"),
            "{wrong}"
        );
    }

    #[test]
    fn cases_no_pattern_matches_are_not_graded() {
        let grading = parse(&format!("{MINIMAL}[points]\n\"shutdown/\" = 3\n")).unwrap();
        assert!(grading
            .cases
            .iter()
            .all(|(c, _)| c.id.starts_with("shutdown/")));
        assert_eq!(grading.max_total(), 3.0 * grading.cases.len() as f64);
    }

    #[test]
    fn durations_take_numbers_or_text_and_commands_take_quotes() {
        let grading = parse(
            "[run]\nstart = \"'./my proxy' {dest_host} {dest_port} {listen_port}\"\n\
             stall_timeout = \"2s\"\ntime_limit = 90\n[points]\n\"*\" = 1\n",
        )
        .unwrap();
        assert_eq!(grading.stall, Duration::from_secs(2));
        assert_eq!(grading.time_limit, Duration::from_secs(90));
        assert_eq!(grading.start[0], "./my proxy");
    }

    #[test]
    fn the_sandbox_section_has_safe_defaults_and_shares_resolve_beside_the_file() {
        let plain = example().sandbox;
        assert_eq!(plain, SandboxSettings::default());
        assert_eq!(
            (plain.mode, plain.build_network),
            (SandboxMode::Auto, false)
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tools")).unwrap();
        let file = dir.path().join("grading.toml");
        let text = format!(
            "{MINIMAL}[points]\n\"*\" = 1\n[sandbox]\nmode = \"namespaces\"\n\
             build_network = true\ndisk_mib = 64\nprocesses = 50\nshare = [\"tools\"]\n"
        );
        let settings = Grading::parse(&text, &file).unwrap().sandbox;
        assert_eq!(settings.mode, SandboxMode::Namespaces);
        assert!(settings.build_network);
        assert_eq!((settings.disk_mib, settings.processes), (64, 50));
        assert_eq!(
            settings.share,
            [dir.path().join("tools").canonicalize().unwrap()]
        );
    }

    #[test]
    fn the_shipped_example_grading_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/grading/grading.toml");
        let grading = Grading::load(&path).unwrap();
        assert_eq!(grading.cases.len(), CATALOGUE.len());
        assert!(grading.build.is_some());
    }

    #[test]
    fn mistakes_are_reported_with_what_to_do() {
        for (text, expected) in [
            (
                format!("{MINIMAL}[points]\n\"ecoh/\" = 1\n"),
                "matches no case",
            ),
            (format!("{MINIMAL}[points]\n\"*\" = -1\n"), "zero or more"),
            (format!("{MINIMAL}[points]\n"), "[points] is empty"),
            (
                format!("{MINIMAL}stall_timeout = \"soon\"\n[points]\n\"*\" = 1\n"),
                "positive duration",
            ),
            (
                format!("{MINIMAL}[limits]\nmemory = 5\n[points]\n\"*\" = 1\n"),
                "unknown field `memory`",
            ),
            ("[points]\n\"*\" = 1\n".to_string(), "missing field `run`"),
            (
                "[run]\nstart = \"\"\n[points]\n\"*\" = 1\n".to_string(),
                "start is empty",
            ),
            (
                format!("{MINIMAL}[points]\n\"*\" = 1\n[export]\nlms_id_column = \" \"\n"),
                "lms_id_column is empty",
            ),
            (
                format!(
                    "{MINIMAL}[points]\n\"*\" = 1\n[export]\ngradescope_visibility = \"public\"\n"
                ),
                "unknown variant `public`",
            ),
            (
                format!("{MINIMAL}[points]\n\"*\" = 1\n[sandbox]\nmode = \"chroot\"\n"),
                "unknown variant `chroot`",
            ),
            (
                format!("{MINIMAL}[points]\n\"*\" = 1\n[sandbox]\nshare = [\"no/such/dir\"]\n"),
                "cannot find no/such/dir",
            ),
            (
                format!("{MINIMAL}[points]\n\"*\" = 1\n[sandbox]\ndisk_mib = 0\n"),
                "disk_mib = 0",
            ),
        ] {
            let error = parse(&text).unwrap_err();
            assert!(
                error.contains(expected),
                "{error:?} should mention {expected:?}"
            );
            assert!(error.starts_with("grading file grading.toml"), "{error}");
        }
    }
}
