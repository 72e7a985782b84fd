//! tprox's HTML pages opened in a real browser: Debian's headless Chromium (`apt-get install
//! chromium`; `.ci/run` installs it). A page is loaded from a file, its scripts run; what comes
//! back is the DOM as the browser built it, what its scripts wrote to the console (errors
//! included), and a screenshot.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A page as Chromium rendered it.
pub struct Rendered {
    /// The DOM after the page's scripts ran (`--dump-dom`).
    pub dom: String,
    /// Console messages and uncaught errors, one per line.
    pub console: Vec<String>,
    /// The screenshot's pixels (1400 × the height asked), `channels` bytes each (RGB or RGBA).
    pub pixels: Vec<u8>,
    pub channels: usize,
}

impl Rendered {
    /// How many pixels of the screenshot have exactly this colour.
    pub fn pixels_of(&self, rgb: [u8; 3]) -> usize {
        self.pixels
            .chunks_exact(self.channels)
            .filter(|p| p[..3] == rgb)
            .count()
    }
}

/// Opens `page` in headless Chromium twice: once for the DOM, once for a screenshot 1400
/// pixels wide and `height` high (taller for a page whose parts to look at lie further down).
pub fn render(page: &Path, height: u32) -> Rendered {
    // The page is opened in a real browser.
    tprox_suite::require(CHROMIUM, "chromium");
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let (dom, log) = run(profile.path(), &["--dump-dom", &url]);
    let shot = profile.path().join("shot.png");
    let (_, more) = run(
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            &format!("--window-size=1400,{height}"),
            &url,
        ],
    );
    let console = log
        .lines()
        .chain(more.lines())
        .filter(|line| line.contains(":CONSOLE") || line.contains("Uncaught"))
        .map(String::from)
        .collect();
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("chromium wrote a screenshot"),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let channels = info.color_type.samples();
    assert!(channels >= 3, "a colour screenshot: {:?}", info.color_type);
    pixels.truncate(info.buffer_size());
    Rendered {
        dom,
        console,
        pixels,
        channels,
    }
}

/// Runs Chromium headless in a process group of its own, as the machine allows (no sandbox
/// as root, no network); kills the whole group afterwards. Returns stdout and stderr.
fn run(profile: &Path, args: &[&str]) -> (String, String) {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let read_all = |mut stream: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stream.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    // Wait for Chromium to exit without reaping it (WNOWAIT): while it is unreaped its process
    // group id cannot be reused, so killing the group afterwards reaches only what Chromium left
    // running (its zygote, a renderer). A hung Chromium is killed too.
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
    let started = Instant::now();
    while matches!(waitid(Id::Pid(pid), flags), Ok(WaitStatus::StillAlive))
        && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    (stdout.join().unwrap(), stderr.join().unwrap())
}
