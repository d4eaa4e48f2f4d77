//! The strict parser and the canonical (Python `json.dumps`) writer.
//!
//! Properties, for any input:
//! - whatever parses is written as pure ASCII, which parses back to an equal value and is
//!   written again byte for byte the same (the canonical form is a fixed point);
//! - differential against serde_json: when we accept, serde_json accepts the same value (same
//!   strings, keys, structure, numbers compared as serde_json reads their spelling) unless a
//!   number is beyond f64 (serde_json's limit); when we refuse, serde_json refuses too, except
//!   for what we refuse on purpose (duplicate keys, nesting deeper than 32).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tv_ingress::json::{self, ParseError, Value};

/// Our value as serde_json holds it (numbers through serde_json's own reading of the spelling).
fn to_serde(value: &Value) -> Option<serde_json::Value> {
    Some(match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => serde_json::from_str(n).ok()?,
        Value::String(s) => serde_json::Value::String(s.to_string()),
        Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(to_serde).collect::<Option<_>>()?)
        }
        Value::Object(object) => serde_json::Value::Object(
            object
                .iter()
                .map(|(k, v)| Some((k.to_owned(), to_serde(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

fuzz_target!(|data: &[u8]| {
    let ours = json::parse(data);
    let theirs = serde_json::from_slice::<serde_json::Value>(data);
    match &ours {
        Ok(value) => {
            let canonical = json::to_python_bytes(value);
            assert!(canonical.is_ascii(), "canonical form is not ASCII");
            let reparsed = json::parse(&canonical).expect("canonical form parses");
            assert_eq!(&reparsed, value, "canonical form changed the value");
            assert_eq!(
                json::to_python_bytes(&reparsed),
                canonical,
                "canonical form is not a fixed point"
            );
            if let Value::Object(object) = value {
                assert_eq!(
                    json::parse_object(&canonical).as_ref(),
                    Ok(object),
                    "parse_object disagrees"
                );
            }
            match (to_serde(value), theirs) {
                (Some(mine), Ok(theirs)) => {
                    assert_eq!(mine, theirs, "serde_json reads another value")
                }
                (None, Err(e)) => assert!(e.to_string().contains("number out of range"), "{e}"),
                (Some(_), Err(e)) => panic!("serde_json refuses what we accept: {e}"),
                (None, Ok(_)) => panic!("a number serde_json reads in context but not alone"),
            }
        }
        Err(ParseError::DuplicateKey { .. } | ParseError::TooDeep) => {}
        Err(e) => assert!(
            theirs.is_err(),
            "we refuse ({e}) what serde_json accepts: {:?}",
            String::from_utf8_lossy(data)
        ),
    }
});
