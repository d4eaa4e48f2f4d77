//! Property test: our canonical form is CPython's `json.dumps`, on thousands of random documents
//! made by `tests/canonical_cpython.py` (fixed seed): unicode from every plane including astral
//! characters, every escape in every legal spelling, control characters, numbers in many
//! spellings (kept exactly as sent), random key orders and whitespace, nested arrays and objects.
//! For each object the in-body HMAC (over the form with `"signature": ""`) is compared too.

mod common;

use common::SECRET;
use std::process::Command;
use std::time::Instant;
use tv_ingress::auth::{sign_body, Key};
use tv_ingress::json::{self as tvjson, Value};

const SEED: &str = "20251226";
const COUNT: usize = 4000;

#[derive(serde::Deserialize)]
struct Case {
    sent: String,
    canonical: String,
    mac: Option<String>,
}

#[test]
fn canonical_form_and_hmac_match_cpython_on_random_documents() {
    let started = Instant::now();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/canonical_cpython.py");
    let out = Command::new("python3")
        .args([script, SEED, &COUNT.to_string(), SECRET])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = started.elapsed();
    let key = Key::from_bytes(SECRET.as_bytes());

    let (mut objects, mut astral, mut controls, mut escapes, mut exponents) = (0, 0, 0, 0, 0);
    let mut cases = 0;
    for (i, line) in String::from_utf8(out.stdout).unwrap().lines().enumerate() {
        let case: Case = serde_json::from_str(line).unwrap();
        cases += 1;
        let value = tvjson::parse(case.sent.as_bytes())
            .unwrap_or_else(|e| panic!("case {i}: CPython's JSON refused ({e}): {:?}", case.sent));
        let canonical = tvjson::to_python_bytes(&value);
        assert!(
            canonical == case.canonical.as_bytes(),
            "case {i}: sent {:?}\n ours   {:?}\n CPython {:?}",
            case.sent,
            String::from_utf8_lossy(&canonical),
            case.canonical
        );
        if let Some(mac) = case.mac {
            let Value::Object(mut object) = value else {
                panic!("case {i}: a MAC for a non-object")
            };
            assert_eq!(sign_body(&key, &mut object), mac, "case {i}: HMAC differs");
            objects += 1;
        }
        astral += usize::from(case.sent.chars().any(|c| c > '\u{FFFF}'));
        controls += usize::from(case.canonical.contains("\\u00"));
        escapes += usize::from(case.sent.contains("\\u") && case.sent.contains("\\/"));
        exponents += usize::from(case.canonical.contains("e+") || case.canonical.contains("E-"));
    }
    println!(
        "{cases} documents ({objects} objects with HMAC) in {:.1} s (python3 {:.1} s); \
         with astral characters sent raw: {astral}, with \\u00XX escapes: {controls}, \
         with \\u and \\/ escapes sent: {escapes}, with exponents: {exponents}",
        started.elapsed().as_secs_f64(),
        generated.as_secs_f64()
    );
    assert_eq!(cases, COUNT);
    // The generator really covers what it claims to.
    for (what, n) in [
        ("objects", objects),
        ("astral", astral),
        ("controls", controls),
        ("escapes", escapes),
        ("exponents", exponents),
    ] {
        assert!(n > COUNT / 20, "only {n} documents with {what}");
    }
}
