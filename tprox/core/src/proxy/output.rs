//! Capturing a program's output: drained continuously (a chatty proxy must never block on a
//! full pipe), its tail kept for diagnostics.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;

/// The last lines of a program's output, bounded in lines and bytes.
pub struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
    /// Everything the program printed, in bytes: how much was not kept.
    printed: u64,
}

impl Default for Tail {
    /// What is kept of a proxy's output: enough for a diagnostic.
    fn default() -> Self {
        Tail::new(40, 8 * 1024)
    }
}

impl Tail {
    const MAX_LINE: usize = 500;

    /// A tail keeping at most `max_lines` lines and `max_bytes` bytes.
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        Tail {
            lines: VecDeque::new(),
            bytes: 0,
            max_lines,
            max_bytes,
            printed: 0,
        }
    }

    /// How many bytes the program printed in all.
    pub fn printed(&self) -> u64 {
        self.printed
    }

    fn push(&mut self, mut line: String) {
        if line.len() > Self::MAX_LINE {
            let mut cut = Self::MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" …");
        }
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > self.max_lines || self.bytes > self.max_bytes {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    /// The kept lines.
    pub fn text(&self) -> String {
        self.lines.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// Drains the child's stdout and stderr into `tail` for as long as they are open.
pub fn capture_output(child: &mut Child, tail: Tail, echo: Option<String>) -> Arc<Mutex<Tail>> {
    let tail = Arc::new(Mutex::new(tail));
    let streams = [
        (
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
            "stdout",
        ),
        (
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
            "stderr",
        ),
    ];
    for (stream, name) in streams {
        if let Some(stream) = stream {
            tokio::spawn(drain(stream, tail.clone(), echo.clone(), name));
        }
    }
    tail
}

async fn drain(
    mut stream: Box<dyn AsyncRead + Send + Unpin>,
    tail: Arc<Mutex<Tail>>,
    echo: Option<String>,
    name: &'static str,
) {
    // Read in chunks, not lines: a proxy that prints without newlines must neither block on a
    // full pipe nor make tprox hold its whole output.
    let mut buf = vec![0u8; 8192];
    let mut line = Vec::new();
    let emit = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line).trim_end().to_string();
        line.clear();
        if let Some(tag) = &echo {
            eprintln!("[{tag}] proxy {name}: {text}");
        }
        tail.lock().unwrap_or_else(|e| e.into_inner()).push(text);
    };
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tail.lock().unwrap_or_else(|e| e.into_inner()).printed += n as u64;
        for piece in buf[..n].split_inclusive(|&b| b == b'\n') {
            if line.len() < Tail::MAX_LINE + 4 {
                line.extend_from_slice(piece);
            }
            if piece.ends_with(b"\n") {
                emit(&mut line);
            }
        }
    }
    if !line.is_empty() {
        emit(&mut line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_tail_stays_bounded() {
        let mut tail = Tail::default();
        for i in 0..1000 {
            tail.push(format!("line {i} {}", "x".repeat(i % 700)));
        }
        assert!(tail.lines.len() <= tail.max_lines);
        assert!(tail.bytes <= tail.max_bytes);
        assert!(tail.text().lines().last().unwrap().starts_with("line 999 "));
    }
}
