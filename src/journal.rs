//! The turn journal: a JSON-lines file to which every finished turn is appended the moment it
//! finishes, so that a run killed before it writes its result JSON (`kill -9`, a crash, an OOM
//! kill) still leaves what it measured.
//!
//! Each line is one JSON object: `user_id` plus the fields of the turn record exactly as in the
//! result JSON's `users[].turns[]`. A thread of the journal's own writes each line with one
//! `write_all` as soon as it is appended. A killed process therefore leaves whole lines (the
//! kernel keeps what was written), all but those appended in the last moment before the kill. The
//! write runs off the async workers because a `write` to a file can block for milliseconds
//! (4 ms was seen on ext4 during a 1000-user run). A worker blocked that long delays every
//! stream it serves, and so the TTFT they measure. The file is not synced to disk, so a power
//! loss can still lose the last lines. [`read_journal`] skips a cut-off last line rather than
//! fail.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::result::TurnRecord;

/// One line of the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalEntry {
    pub user_id: usize,
    #[serde(flatten)]
    pub turn: TurnRecord,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("failed to create the turn journal {path}; pass a writable path with --journal")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read the turn journal {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("line {line} of the turn journal {path} is not a turn entry")]
    Parse {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// An open journal. Appends from several tasks go through one channel to the writer thread,
/// which writes them in the order they were appended.
#[derive(Debug)]
pub struct TurnJournal {
    path: PathBuf,
    /// `None` once the journal is being dropped.
    sender: Mutex<Option<Sender<Message>>>,
    writer: Option<JoinHandle<()>>,
    failed_writes: Arc<AtomicU64>,
}

/// A message to the writer thread.
enum Message {
    Line(Vec<u8>),
    /// A request for a reply once every earlier line is written.
    Sync(SyncSender<()>),
}

impl TurnJournal {
    /// Creates the journal at `path`, replacing an older file, and its parent directories,
    /// and starts its writer thread.
    pub fn create(path: &Path) -> Result<Self, JournalError> {
        let create_error = |source| JournalError::Create {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(create_error)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(create_error)?;
        let (sender, receiver) = channel();
        let failed_writes = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            path: path.to_owned(),
            file,
            failed_writes: Arc::clone(&failed_writes),
        };
        let writer = std::thread::Builder::new()
            .name("clawperf-journal".to_owned())
            .spawn(move || writer.run(receiver))
            .map_err(create_error)?;
        Ok(Self {
            path: path.to_owned(),
            sender: Mutex::new(Some(sender)),
            writer: Some(writer),
            failed_writes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one finished turn. A failed write is logged (the first one as a warning) and
    /// counted, and the run goes on: the result JSON still gets every turn.
    pub fn append(&self, user_id: usize, turn: &TurnRecord) {
        let entry = JournalEntry {
            user_id,
            turn: turn.clone(),
        };
        let mut line = serde_json::to_vec(&entry).expect("a turn record always serializes");
        line.push(b'\n');
        self.send(Message::Line(line));
    }

    /// Waits until every line appended so far is written.
    pub fn sync(&self) {
        let (done, wait) = sync_channel(1);
        self.send(Message::Sync(done));
        // The writer thread runs until the journal is dropped, so the reply always comes.
        let _ = wait.recv();
    }

    /// Returns how many appends failed so far. Call [`sync`](Self::sync) first to count them
    /// all.
    pub fn failed_writes(&self) -> u64 {
        self.failed_writes.load(Ordering::Relaxed)
    }

    fn send(&self, message: Message) {
        let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = sender.as_ref() {
            // The writer thread ends only when this sender is dropped.
            let _ = sender.send(message);
        }
    }
}

impl Drop for TurnJournal {
    /// Writes every line appended so far, then stops the writer thread.
    fn drop(&mut self) {
        drop(
            self.sender
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread's side of a journal.
struct Writer {
    path: PathBuf,
    file: File,
    failed_writes: Arc<AtomicU64>,
}

impl Writer {
    /// Writes lines until the journal is dropped.
    fn run(mut self, receiver: Receiver<Message>) {
        for message in receiver {
            match message {
                Message::Line(line) => self.write(&line),
                Message::Sync(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    fn write(&mut self, line: &[u8]) {
        let Err(error) = self.file.write_all(line) else {
            return;
        };
        let earlier = self.failed_writes.fetch_add(1, Ordering::Relaxed);
        if earlier == 0 {
            tracing::warn!(
                path = %self.path.display(),
                %error,
                "failed to append to the turn journal; the result JSON still gets every turn"
            );
        } else {
            tracing::debug!(path = %self.path.display(), %error, "failed to append to the turn journal");
        }
    }
}

/// Reads a journal. A last line without its newline (the process was killed inside the write)
/// is skipped; any other line that does not parse is an error.
pub fn read_journal(path: &Path) -> Result<Vec<JournalEntry>, JournalError> {
    let text = std::fs::read_to_string(path).map_err(|source| JournalError::Read {
        path: path.to_owned(),
        source,
    })?;
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|source| JournalError::Parse {
                path: path.to_owned(),
                line: index + 1,
                source,
            })
        })
        .collect()
}

/// Returns the default journal path for a result JSON at `output`: the same name with the
/// extension replaced by `turns.jsonl` (`results.json` gives `results.turns.jsonl`).
pub fn default_journal_path(output: &Path) -> PathBuf {
    output.with_extension("turns.jsonl")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(turn_id: usize) -> TurnRecord {
        TurnRecord {
            turn_id,
            success: true,
            start_s: 0.5,
            ttft_ms: Some(12.5),
            time_to_first_content_ms: Some(12.5),
            e2e_latency_ms: Some(40.0),
            stream_end_ms: Some(41.0),
            tpot_ms: Some(3.0),
            itl_count: 9,
            itl_mean_ms: Some(3.0),
            itl_max_ms: Some(4.0),
            input_tokens: 100,
            new_input_tokens: 20,
            output_tokens: Some(10),
            output_tokens_source: Some(crate::result::TokenCountSource::Usage),
            context_tokens: 110,
            user_prefix_tokens: 50,
            compaction_triggered: false,
            server_prompt_tokens: Some(100),
            server_completion_tokens: Some(10),
            server_cached_tokens: None,
            finish_reason: Some("length".to_owned()),
            error: None,
        }
    }

    #[test]
    fn entries_round_trip() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("run.turns.jsonl");
        let journal = TurnJournal::create(&path).unwrap();
        journal.append(0, &record(1));
        journal.append(3, &record(2));

        journal.sync();
        let entries = read_journal(&path).unwrap();

        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].user_id, 3);
        assert_eq!(entries[1].turn.turn_id, 2);
        assert_eq!(entries[1].turn.ttft_ms, Some(12.5));
        assert_eq!(journal.failed_writes(), 0);
    }

    #[test]
    fn cut_last_line_is_skipped() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("run.turns.jsonl");
        let journal = TurnJournal::create(&path).unwrap();
        journal.append(0, &record(1));
        journal.sync();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"user_id":0,"turn_id":2,"succ"#)
            .unwrap();

        let entries = read_journal(&path).unwrap();

        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].turn.turn_id, 1);
    }

    #[test]
    fn create_replaces_an_old_journal() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("nested").join("run.turns.jsonl");
        TurnJournal::create(&path).unwrap().append(0, &record(1));

        let journal = TurnJournal::create(&path).unwrap();
        journal.append(1, &record(7));

        journal.sync();
        let entries = read_journal(&path).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].turn.turn_id, 7);
    }

    #[test]
    fn default_path_sits_next_to_the_output() {
        assert_eq!(
            default_journal_path(Path::new("out/results.json")),
            PathBuf::from("out/results.turns.jsonl")
        );
        assert_eq!(
            default_journal_path(Path::new("results")),
            PathBuf::from("results.turns.jsonl")
        );
    }
}
