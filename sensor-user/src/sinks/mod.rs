//! Where records go. One module per sink.

pub mod file;
pub mod prometheus;
pub mod stdout;
pub mod tui;

use crate::model::Record;

pub trait Sink: Send {
    fn emit(&mut self, record: &Record) -> anyhow::Result<()>;
    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Keeps every record; for tests and for callers that post-process.
#[derive(Default)]
pub struct Collect(pub std::sync::Arc<std::sync::Mutex<Vec<Record>>>);

impl Sink for Collect {
    fn emit(&mut self, record: &Record) -> anyhow::Result<()> {
        self.0
            .lock()
            .map_err(|_| anyhow::anyhow!("collector poisoned"))?
            .push(record.clone());
        Ok(())
    }
}

/// Sends every record to several sinks.
pub struct Fanout(pub Vec<Box<dyn Sink>>);

impl Sink for Fanout {
    fn emit(&mut self, record: &Record) -> anyhow::Result<()> {
        for s in &mut self.0 {
            s.emit(record)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        for s in &mut self.0 {
            s.flush()?;
        }
        Ok(())
    }
}
