//! Progress of long work (`load`, `push`): a bar when stderr is a
//! terminal, one plain line per phase otherwise (so CI logs show where a
//! long run is), nothing with `--quiet`.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use protoshelf::registry::{Progress, Step};

/// Without a terminal, a phase that runs long also prints how far it is,
/// at most this often.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

enum Sink {
    Quiet,
    Bar(ProgressBar),
    Plain(Mutex<Instant>),
}

/// Reports the phases of one command; cheap to clone into callbacks.
#[derive(Clone)]
pub struct Reporter {
    sink: Arc<Sink>,
    command: &'static str,
}

impl Reporter {
    pub fn new(command: &'static str, quiet: bool) -> Reporter {
        let sink = if quiet {
            Sink::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({elapsed})")
                .expect("valid template")
                .progress_chars("=> ");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            Sink::Bar(bar)
        } else {
            Sink::Plain(Mutex::new(Instant::now()))
        };
        Reporter {
            sink: Arc::new(sink),
            command,
        }
    }

    fn line(&self, text: &str) {
        let _ = writeln!(std::io::stderr(), "{}: {text}", self.command);
    }

    /// A phase's position: the bar moves; a plain line is printed when the
    /// phase starts, ends, or has run [`PLAIN_EVERY`] since the last line.
    fn at(&self, what: &str, unit: &str, done: usize, total: usize, extra: &str) {
        match &*self.sink {
            Sink::Quiet => {}
            Sink::Bar(bar) => {
                bar.set_message(format!("{what}{extra}"));
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
            Sink::Plain(last) => {
                let mut last = last.lock().unwrap();
                let edge = done == 0 || done == total;
                if edge || last.elapsed() >= PLAIN_EVERY {
                    *last = Instant::now();
                    self.line(&format!("{what} {done}/{total} {unit}{extra}"));
                }
            }
        }
    }

    /// Reading files from disk: `done` of `total` files, `bytes` so far.
    pub fn reading(&self, done: usize, total: usize, bytes: u64) {
        self.at(
            "reading",
            "files",
            done,
            total,
            &format!(", {}", HumanBytes(bytes)),
        );
    }

    /// The registry's progress, told to this reporter.
    pub fn publish_progress(&self) -> Option<Progress> {
        if matches!(*self.sink, Sink::Quiet) {
            return None;
        }
        let me = self.clone();
        Some(Progress(Arc::new(move |step| match step {
            Step::Compiling { done, total } => me.at("compiling", "schemas", done, total, ""),
            Step::Storing { done, total } => me.at("storing", "versions", done, total, ""),
        })))
    }

    /// Clears the bar (the command's own output follows).
    pub fn finish(&self) {
        if let Sink::Bar(bar) = &*self.sink {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Sink {
    /// A command that fails half-way leaves no bar behind its error.
    fn drop(&mut self) {
        if let Sink::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
