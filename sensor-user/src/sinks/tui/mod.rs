//! The live dashboard (`rds-sensor run` / `demo` on a terminal): a sink that aggregates the
//! records into a [`State`] and a thread that draws it with ratatui + crossterm four times a
//! second and reads the keys (`q` quits, `s` sorts, `/` filters).
//!
//! While it runs, log lines (tracing) go to its health panel instead of stderr. `q` (or
//! Ctrl-C, which raw mode turns into a key) resolves the future [`Dashboard::start`] returns;
//! the caller makes it part of the agent's shutdown future, so that quitting stops the agent as
//! SIGINT does (last flows, last summary, clean detach); then [`Dashboard::stop`] restores the
//! terminal.

pub mod state;
pub mod view;

pub use state::State;
pub use view::{SortBy, View, render};

use crate::{model::Record, sinks::Sink};
use anyhow::{Context, Result};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Feeds the dashboard.
#[derive(Clone)]
pub struct TuiSink(Shared);

impl Sink for TuiSink {
    fn emit(&mut self, record: &Record) -> Result<()> {
        lock(&self.0).observe(record);
        Ok(())
    }
}

/// What a key does.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
}

/// Applies a key to the view.
pub fn on_key(view: &mut View, k: KeyEvent) -> Action {
    if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
        return Action::Quit;
    }
    if view.editing {
        match k.code {
            KeyCode::Enter => view.editing = false,
            KeyCode::Esc => {
                view.editing = false;
                view.filter.clear();
            }
            KeyCode::Backspace => {
                view.filter.pop();
            }
            KeyCode::Char(c) => view.filter.push(c),
            _ => {}
        }
        return Action::None;
    }
    match k.code {
        KeyCode::Char('q') | KeyCode::Char('Q') => return Action::Quit,
        KeyCode::Char('s') => view.sort = view.sort.next(),
        KeyCode::Char('/') => view.editing = true,
        KeyCode::Esc => view.filter.clear(),
        _ => {}
    }
    Action::None
}

/// The dashboard: its state from the start (so that log lines are kept), its thread once
/// started.
pub struct Dashboard {
    state: Shared,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Default for Dashboard {
    fn default() -> Self {
        Self::new()
    }
}

impl Dashboard {
    pub fn new() -> Self {
        Self {
            state: Shared::default(),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        }
    }

    /// A tracing writer that puts each log line in the health panel.
    pub fn log_writer(&self) -> tracing_subscriber::fmt::writer::BoxMakeWriter {
        let state = self.state.clone();
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || LogLine {
            state: state.clone(),
            buf: Vec::new(),
        })
    }

    /// Takes over the terminal; returns the sink to feed and a future that resolves when the
    /// operator quits.
    pub fn start(&mut self) -> Result<(TuiSink, impl std::future::Future<Output = ()> + use<>)> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = self.state.clone();
        let stop = self.stop.clone();
        let thread = std::thread::Builder::new()
            .name("dashboard".into())
            .spawn(move || -> Result<()> {
                let mut term = ratatui::try_init().context("setting up the terminal")?;
                let started = Instant::now();
                let mut view = View::default();
                let mut tx = Some(tx);
                let res = (|| -> Result<()> {
                    while !stop.load(Ordering::Acquire) {
                        {
                            let mut st = lock(&state);
                            st.tick(started.elapsed().as_secs());
                            term.draw(|f| render(f, &st, &view))?;
                        }
                        if event::poll(Duration::from_millis(250))?
                            && let Event::Key(k) = event::read()?
                            && k.kind == KeyEventKind::Press
                            && on_key(&mut view, k) == Action::Quit
                            && let Some(tx) = tx.take()
                        {
                            lock(&state).log_line("stopping…".into());
                            let _ = tx.send(());
                        }
                    }
                    Ok(())
                })();
                ratatui::restore();
                res
            })
            .context("starting the dashboard thread")?;
        self.thread = Some(thread);
        let quit = async move {
            // An Err is the thread gone (terminal error): stop as well.
            let _ = rx.await;
        };
        Ok((TuiSink(self.state.clone()), quit))
    }

    /// Restores the terminal (once the agent has stopped).
    pub fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("the dashboard thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One log event, written to the health panel when tracing drops the writer.
struct LogLine {
    state: Shared,
    buf: Vec<u8>,
}

impl std::io::Write for LogLine {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let mut st = lock(&self.state);
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            // Without the timestamp (the panel is narrow): `LEVEL target: message`.
            let l = l.trim();
            let l = match l.split_once(' ') {
                Some((ts, rest)) if ts.len() > 20 && ts.contains('T') => rest.trim_start(),
                _ => l,
            };
            st.log_line(l.to_string());
        }
    }
}

#[cfg(test)]
mod tests;
