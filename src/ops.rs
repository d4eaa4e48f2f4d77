//! Operator tools for users without the `nats` CLI: `tail` follows accepted signals, `status`
//! summarizes the stream and the halt switch.
//!
//! `tail` reads through an ordered ephemeral consumer: no acknowledgements, nothing deleted,
//! nothing left behind on the server when it exits.

use async_nats::jetstream::{self, consumer, stream};
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::StreamExt;
use serde_json::{json, Value as Json};
use std::io::Write;
use std::time::Duration;

use crate::config::BrokerSettings;
use crate::halt::{HaltBucket, HaltState, HALT_KEY};
use crate::signal::subject_token;

/// Where `tail` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    /// Only signals accepted from now on.
    Now,
    /// Everything in the stream.
    All,
    /// The last N matching signals.
    Last(u64),
    /// Signals accepted in the last duration.
    Since(Duration),
}

/// Parses `90s`, `5m`, `2h`, `1d` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 5m, 2h or 1d"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{text:?} is not a duration like 90s, 5m, 2h or 1d")),
    };
    Ok(Duration::from_secs(seconds))
}

fn filter_subject(settings: &BrokerSettings, ticker: Option<&str>) -> String {
    match ticker {
        Some(t) => format!("{}.{}", settings.nats_subject_prefix, subject_token(t)),
        None => format!("{}.>", settings.nats_subject_prefix),
    }
}

/// Writes accepted signals as JSON lines to `out` until `max` have been written (or forever).
pub async fn tail(
    settings: &BrokerSettings,
    from: From,
    ticker: Option<&str>,
    max: Option<u64>,
    out: &mut (dyn Write + Send),
) -> Result<u64, String> {
    let client = settings.connect().await?;
    let js = jetstream::new(client);
    let stream = js
        .get_stream(&settings.nats_stream)
        .await
        .map_err(|e| format!("stream {}: {e}", settings.nats_stream))?;
    let filter = filter_subject(settings, ticker);
    let (deliver_policy, mut skip) = match from {
        From::Now => (consumer::DeliverPolicy::New, 0),
        From::All => (consumer::DeliverPolicy::All, 0),
        From::Since(d) => {
            let start = Utc::now() - chrono::Duration::from_std(d).map_err(|e| e.to_string())?;
            (
                consumer::DeliverPolicy::ByStartTime { start_time: start },
                0,
            )
        }
        From::Last(n) => {
            // Count what matches, then skip all but the last n of it.
            let mut matching = 0u64;
            let mut subjects = stream
                .info_with_subjects(&filter)
                .await
                .map_err(|e| format!("stream info: {e}"))?;
            while let Some(entry) = subjects.next().await {
                let (_, count) = entry.map_err(|e| format!("stream info: {e}"))?;
                matching += count as u64;
            }
            (consumer::DeliverPolicy::All, matching.saturating_sub(n))
        }
    };
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.clone(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating an ordered consumer: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("reading: {e}"))?;
    // On stderr, so scripts (and tests) know the consumer is in place before sending.
    eprintln!(
        "tail: following {filter} on stream {}",
        settings.nats_stream
    );
    let mut written = 0u64;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| format!("reading: {e}"))?;
        if skip > 0 {
            skip -= 1;
            continue;
        }
        let (sequence, published) = match message.info() {
            Ok(info) => (info.stream_sequence, Some(info.published)),
            Err(_) => (0, None),
        };
        let signal: Json = serde_json::from_slice(&message.payload).unwrap_or_else(|_| {
            Json::String(String::from_utf8_lossy(&message.payload).into_owned())
        });
        let line = json!({
            "stream_seq": sequence,
            "subject": message.subject.as_str(),
            "stored_at": published.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true)),
            "signal": signal,
        });
        writeln!(out, "{line}").map_err(|e| format!("writing: {e}"))?;
        out.flush().map_err(|e| format!("writing: {e}"))?;
        written += 1;
        if max.is_some_and(|m| written >= m) {
            break;
        }
    }
    Ok(written)
}

fn time(t: DateTime<Utc>) -> Option<String> {
    (t.timestamp() > 0).then(|| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The stream's and the halt switch's state, as JSON.
pub async fn status(settings: &BrokerSettings) -> Result<Json, String> {
    let client = settings.connect().await?;
    let js = jetstream::new(client);
    let mut stream = js
        .get_stream(&settings.nats_stream)
        .await
        .map_err(|e| format!("stream {}: {e}", settings.nats_stream))?;
    let info: stream::Info = stream
        .info()
        .await
        .map_err(|e| format!("stream info: {e}"))?
        .clone();
    let bucket = HaltBucket {
        name: settings.halt_bucket.clone(),
        replicas: 1,
    };
    let halt = match bucket.open_existing(&js).await {
        Ok(Some(store)) => match store.entry(HALT_KEY).await {
            Ok(Some(entry)) => {
                serde_json::to_value(HaltState::from_entry(&entry)).unwrap_or_default()
            }
            Ok(None) => json!({"state": "running"}),
            Err(e) => json!({"state": "unknown", "reason": e.to_string()}),
        },
        Ok(None) => json!({"state": "running", "note": "no halt bucket yet"}),
        Err(e) => json!({"state": "unknown", "reason": e}),
    };
    let cluster = info.cluster.as_ref();
    Ok(json!({
        "stream": info.config.name,
        "subjects": info.config.subjects,
        "messages": info.state.messages,
        "bytes": info.state.bytes,
        "first_seq": info.state.first_sequence,
        "first_time": time(info.state.first_timestamp),
        "last_seq": info.state.last_sequence,
        "last_time": time(info.state.last_timestamp),
        "duplicate_window_s": info.config.duplicate_window.as_secs(),
        "max_age_s": info.config.max_age.as_secs(),
        "storage": format!("{:?}", info.config.storage).to_lowercase(),
        "replicas": info.config.num_replicas,
        "cluster": cluster.and_then(|c| c.name.clone()),
        "leader": cluster.and_then(|c| c.leader.clone()),
        "followers": cluster.map(|c| c.replicas.iter().map(|p| json!({
            "name": p.name, "current": p.current, "offline": p.offline, "lag": p.lag,
        })).collect::<Vec<_>>()),
        "halt": halt,
    }))
}

/// `status` for people: one aligned line per fact.
pub fn render_status(status: &Json) -> String {
    let s = |k: &str| match &status[k] {
        Json::Null => "-".to_string(),
        Json::String(v) => v.clone(),
        other => other.to_string(),
    };
    let halt = &status["halt"];
    let halt_line = match halt["state"].as_str() {
        Some("halted") => format!(
            "HALTED since {} by {}: {}",
            halt["change"]["at"].as_str().unwrap_or("?"),
            halt["change"]["by"].as_str().unwrap_or("?"),
            halt["change"]["reason"].as_str().unwrap_or("")
        ),
        Some(state) => state.to_string(),
        None => "unknown".into(),
    };
    let followers = status["followers"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|p| {
                    format!(
                        "{}{}",
                        p["name"].as_str().unwrap_or("?"),
                        if p["current"] == true {
                            ""
                        } else {
                            " (behind)"
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "-".into());
    [
        format!("stream            {}", s("stream")),
        format!("subjects          {}", s("subjects")),
        format!("messages          {} ({} bytes)", s("messages"), s("bytes")),
        format!(
            "first             seq {} at {}",
            s("first_seq"),
            s("first_time")
        ),
        format!(
            "last              seq {} at {}",
            s("last_seq"),
            s("last_time")
        ),
        format!("duplicate window  {}s", s("duplicate_window_s")),
        format!("max age           {}s", s("max_age_s")),
        format!("storage           {}", s("storage")),
        format!(
            "replicas          {} (cluster {}, leader {}, followers {})",
            s("replicas"),
            s("cluster"),
            s("leader"),
            followers
        ),
        format!("halt              {halt_line}"),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }
}
