//! The core's `tracing` events, forwarded to Python's `logging` without a Rust thread
//! attaching to the interpreter: a subscriber formats each event into a record and queues
//! it; the asyncio loop takes the records with its next batch and logs them under the
//! `vyx.core` logger (spec/HOSTS.md §11).

use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// One formatted event: Python's level number, the Rust target, the message.
pub(crate) type Record = (u8, String, String);

/// Records kept at most while no loop takes them: the oldest go first.
const MAX_QUEUED: usize = 1000;

static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());

/// Installs the forwarding subscriber as the process's global one (once; a program that
/// installed its own keeps it).
pub(crate) fn install() {
    let subscriber = tracing_subscriber::registry().with(Forward);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The records queued since the last call.
pub(crate) fn take() -> Vec<Record> {
    std::mem::take(&mut *RECORDS.lock().unwrap_or_else(PoisonError::into_inner))
}

struct Forward;

impl<S: Subscriber> Layer<S> for Forward {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        // Per-stream debug events would cost on the hot path and say little to a user.
        *metadata.level() <= Level::INFO
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        let level = match *event.metadata().level() {
            Level::ERROR => 40,
            Level::WARN => 30,
            Level::INFO => 20,
            Level::DEBUG => 10,
            Level::TRACE => 5,
        };
        let record = (level, event.metadata().target().to_owned(), text.0);
        {
            let mut records = RECORDS.lock().unwrap_or_else(PoisonError::into_inner);
            if records.len() >= MAX_QUEUED {
                records.remove(0);
            }
            records.push(record);
        }
        crate::hub::wake_all();
    }
}

/// `message key=value ...`, the way the fmt subscriber writes an event.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            if !rest.is_empty() {
                self.0.push(' ');
                self.0.push_str(&rest);
            }
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }
}
