//! The halt switch: one key in a JetStream key-value bucket that every replica watches.
//!
//! Replicas share no memory, but they all read the same bucket, so a halt set by the admin API on
//! one replica, or by an operator with `nats kv put`, stops all of them within a second (the
//! watch delivers the change as soon as it is stored). The bucket keeps the history of changes:
//! who (an admin token's fingerprint, or `nats` for a change made outside), when and why.
//!
//! Fail safe: until the bucket has been read the state is *unknown* and signals get 503
//! (retryable); if NATS answers but the bucket cannot be read, the receiver halts itself and says
//! why, until a read succeeds.

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The key holding the halt state.
pub const HALT_KEY: &str = "halt";
/// How long a known state survives a bucket that NATS says exists but cannot be read.
pub const HALT_STALE_AFTER: Duration = Duration::from_secs(60);
/// Changes the bucket remembers (the JetStream maximum).
const HISTORY: i64 = 64;

/// What is stored under [`HALT_KEY`]. Operators may also store a bare `true` or `false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaltRecord {
    pub halted: bool,
    #[serde(default)]
    pub reason: String,
    /// `admin:<token fingerprint>` for the admin API; absent when set with the nats CLI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// The state a replica acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HaltState {
    /// Not read yet: answer 503, so senders retry.
    Unknown {
        reason: String,
    },
    Running {
        #[serde(skip_serializing_if = "Option::is_none")]
        changed: Option<Change>,
    },
    Halted {
        change: Change,
    },
}

/// Who changed the state, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub reason: String,
    pub by: String,
    pub at: String,
    /// The bucket revision, 0 when the state was decided locally (fail safe).
    pub revision: u64,
}

impl HaltState {
    pub fn is_halted(&self) -> bool {
        matches!(self, HaltState::Halted { .. })
    }

    pub fn is_known(&self) -> bool {
        !matches!(self, HaltState::Unknown { .. })
    }

    /// The state an entry of the bucket means. A value that cannot be read halts (fail safe).
    pub fn from_entry(entry: &kv::Entry) -> HaltState {
        let at = entry.created.to_rfc3339_opts(SecondsFormat::Millis, true);
        if matches!(
            entry.operation,
            kv::Operation::Delete | kv::Operation::Purge
        ) {
            return HaltState::Running {
                changed: Some(Change {
                    reason: "halt key deleted".into(),
                    by: "nats".into(),
                    at,
                    revision: entry.revision,
                }),
            };
        }
        let record = parse_value(&entry.value);
        let change = |reason: String, by: Option<String>| Change {
            reason,
            by: by.unwrap_or_else(|| "nats".into()),
            at: at.clone(),
            revision: entry.revision,
        };
        match record {
            Ok(r) if r.halted => HaltState::Halted {
                change: change(r.reason, r.by),
            },
            Ok(r) => HaltState::Running {
                changed: Some(change(r.reason, r.by)),
            },
            Err(problem) => HaltState::Halted {
                change: change(
                    format!("unreadable halt value ({problem}); halted to be safe"),
                    None,
                ),
            },
        }
    }
}

fn parse_value(value: &[u8]) -> Result<HaltRecord, String> {
    let text = std::str::from_utf8(value)
        .map_err(|_| "not UTF-8".to_string())?
        .trim();
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "halt" | "halted" => {
            return Ok(HaltRecord {
                halted: true,
                reason: String::new(),
                by: None,
                at: None,
            })
        }
        "false" | "0" | "resume" | "running" => {
            return Ok(HaltRecord {
                halted: false,
                reason: String::new(),
                by: None,
                at: None,
            })
        }
        _ => {}
    }
    serde_json::from_str(text).map_err(|_| "expected true, false or {\"halted\": …}".to_string())
}

/// The replica's view of the switch, shared by handlers and the watcher.
#[derive(Debug, Clone)]
pub struct HaltSwitch {
    state: Arc<RwLock<HaltState>>,
}

impl Default for HaltSwitch {
    fn default() -> Self {
        HaltSwitch::new()
    }
}

impl HaltSwitch {
    pub fn new() -> HaltSwitch {
        HaltSwitch {
            state: Arc::new(RwLock::new(HaltState::Unknown {
                reason: "halt state not read yet".into(),
            })),
        }
    }

    pub fn current(&self) -> HaltState {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, next: HaltState) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if *state != next {
            match &next {
                HaltState::Halted { change } => tracing::warn!(
                    reason = %change.reason, by = %change.by, revision = change.revision,
                    "HALTED: signals are refused with 423 until resumed"
                ),
                HaltState::Running { changed } => tracing::info!(
                    reason = changed.as_ref().map(|c| c.reason.as_str()).unwrap_or(""),
                    by = changed.as_ref().map(|c| c.by.as_str()).unwrap_or(""),
                    "running: signals are accepted"
                ),
                HaltState::Unknown { reason } => tracing::warn!(%reason, "halt state unknown"),
            }
            *state = next;
        }
    }
}

/// Bucket settings for the halt switch.
#[derive(Debug, Clone)]
pub struct HaltBucket {
    pub name: String,
    pub replicas: usize,
}

impl HaltBucket {
    /// Opens the bucket when it exists (tools that must not create it).
    pub async fn open_existing(
        &self,
        js: &jetstream::Context,
    ) -> Result<Option<kv::Store>, String> {
        match js.get_key_value(&self.name).await {
            Ok(store) => Ok(Some(store)),
            Err(e) if bucket_missing(&e) => Ok(None),
            Err(e) => Err(format!("opening halt bucket {}: {e}", self.name)),
        }
    }

    /// Opens the bucket, creating it when missing.
    pub async fn open(&self, js: &jetstream::Context) -> Result<kv::Store, String> {
        match js.get_key_value(&self.name).await {
            Ok(store) => Ok(store),
            Err(e) if bucket_missing(&e) => js
                .create_key_value(kv::Config {
                    bucket: self.name.clone(),
                    description: "tv-ingress halt switch; key `halt`".into(),
                    history: HISTORY,
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: self.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("creating halt bucket {}: {e}", self.name)),
            Err(e) => Err(format!("opening halt bucket {}: {e}", self.name)),
        }
    }
}

/// Whether opening a bucket failed because it does not exist (not because NATS did not answer).
fn bucket_missing(error: &jetstream::context::KeyValueError) -> bool {
    std::error::Error::source(error)
        .and_then(|s| s.downcast_ref::<jetstream::context::GetStreamError>())
        .is_some_and(|e| {
            matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
        })
}

/// Reads the bucket and follows every change until the task is dropped.
pub async fn watch(
    client: async_nats::Client,
    js: jetstream::Context,
    bucket: HaltBucket,
    switch: HaltSwitch,
) {
    // Since when the bucket has been unreadable while NATS answers.
    let mut unreadable_since: Option<tokio::time::Instant> = None;
    loop {
        if client.connection_state() != async_nats::connection::State::Connected {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        match follow(&js, &bucket, &switch).await {
            Ok(()) => unreadable_since = None,
            Err(problem) if !answers(&js).await => {
                // NATS does not answer at all (stopped, frozen, partitioned): that is no
                // unreadable bucket. Publishing fails with 503 meanwhile, which senders resend;
                // halting would answer 423, which TradingView never resends, losing every signal
                // of the stall. The last known state holds (unknown stays unknown: 503).
                tracing::warn!(%problem, "halt bucket unreadable: NATS does not answer");
            }
            Err(problem) => {
                let since = *unreadable_since.get_or_insert_with(tokio::time::Instant::now);
                tracing::warn!(%problem, "halt bucket unreadable");
                // NATS answers but the bucket does not: fail safe at start-up. Once the state is
                // known it holds through short trouble (a bucket leader election takes seconds,
                // and a 423 in the meantime would lose signals TradingView never resends); only a
                // bucket unreadable for HALT_STALE_AFTER halts.
                if !switch.current().is_known() || since.elapsed() >= HALT_STALE_AFTER {
                    switch.set(HaltState::Halted {
                        change: Change {
                            reason: format!("halt state could not be read: {problem}"),
                            by: "tv-ingress".into(),
                            at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
                            revision: 0,
                        },
                    });
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether JetStream answers at all: its account info, or an error of its own.
async fn answers(js: &jetstream::Context) -> bool {
    match js.query_account().await {
        Ok(_) => true,
        Err(e) => matches!(e.kind(), jetstream::context::AccountErrorKind::JetStream(_)),
    }
}

async fn follow(
    js: &jetstream::Context,
    bucket: &HaltBucket,
    switch: &HaltSwitch,
) -> Result<(), String> {
    let store = bucket.open(js).await?;
    let current = store
        .entry(HALT_KEY)
        .await
        .map_err(|e| format!("reading {}: {e}", HALT_KEY))?;
    switch.set(match &current {
        Some(entry) => HaltState::from_entry(entry),
        None => HaltState::Running { changed: None },
    });
    let mut updates = store
        .watch_with_history(HALT_KEY)
        .await
        .map_err(|e| format!("watching {}: {e}", HALT_KEY))?;
    while let Some(update) = updates.next().await {
        let entry = update.map_err(|e| format!("watch: {e}"))?;
        switch.set(HaltState::from_entry(&entry));
    }
    Err("watch ended".into())
}

/// Stores a change (admin API). Returns the new revision.
pub async fn record(store: &kv::Store, record: &HaltRecord) -> Result<u64, String> {
    let value = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    store
        .put(HALT_KEY, Bytes::from(value))
        .await
        .map_err(|e| format!("writing halt state: {e}"))
}

/// The recorded changes, newest first, at most `limit`.
pub async fn history(store: &kv::Store, limit: usize) -> Result<Vec<HaltState>, String> {
    let mut entries = store
        .history(HALT_KEY)
        .await
        .map_err(|e| format!("reading history: {e}"))?;
    let mut all = Vec::new();
    while let Some(entry) = entries.next().await {
        match entry {
            Ok(entry) => all.push(HaltState::from_entry(&entry)),
            Err(e) => {
                // No history yet reads as an error from the server; it is simply empty.
                tracing::debug!(error = %e, "halt history");
                break;
            }
        }
    }
    all.reverse();
    all.truncate(limit);
    Ok(all)
}

/// Now as the halt records write it.
pub fn now_string() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `DateTime` re-export for callers formatting times like the records.
pub type Time = DateTime<Utc>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_operators_may_type_are_understood() {
        let cases: &[(&str, Option<bool>)] = &[
            ("true", Some(true)),
            ("TRUE", Some(true)),
            ("false", Some(false)),
            (" 0 ", Some(false)),
            (r#"{"halted": true, "reason": "FOMC"}"#, Some(true)),
            (r#"{"halted": false}"#, Some(false)),
            ("maybe", None),
            (r#"{"halt": true}"#, None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                parse_value(value.as_bytes()).ok().map(|r| r.halted),
                *expected,
                "{value}"
            );
        }
    }
}
