//! Strict JSON for signed webhooks, and the Python-compatible canonical form.
//!
//! The in-body signature scheme signs what Python's default `json.dumps` prints, so the receiver
//! must see the object exactly as the sender built it: keys in received order, numbers spelled as
//! received, and no ambiguity about which of two equal keys counts. `serde_json` resolves
//! duplicate keys silently and re-spells numbers, so this module has its own small parser
//! (RFC 8259, no extensions) that rejects duplicate keys at any depth, a byte-order mark, invalid
//! UTF-8, lone surrogates and nesting deeper than [`MAX_DEPTH`], and a writer that reproduces
//! `json.dumps(obj)` byte for byte.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Deepest nesting of arrays and objects accepted; a signal needs two levels.
pub const MAX_DEPTH: usize = 32;

/// A parsed JSON value. Numbers keep their received spelling. Strings and numbers borrow from
/// the input unless an escape had to be decoded (a signal's dozen strings cost no allocation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// The number exactly as it appeared in the input (already checked against JSON's grammar).
    Number(Cow<'a, str>),
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    Object(Object<'a>),
}

impl Value<'_> {
    /// The same value owning all of its text (to outlive the input).
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Number(n) => Value::Number(Cow::Owned(n.into_owned())),
            Value::String(s) => Value::String(Cow::Owned(s.into_owned())),
            Value::Array(items) => Value::Array(items.into_iter().map(Value::into_owned).collect()),
            Value::Object(object) => Value::Object(object.into_owned()),
        }
    }
}

/// A JSON object with unique keys, kept in received order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Object<'a> {
    members: Vec<(Cow<'a, str>, Value<'a>)>,
}

impl<'a> Object<'a> {
    /// The same object owning all of its text (to outlive the input).
    pub fn into_owned(self) -> Object<'static> {
        Object {
            members: self
                .members
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                .collect(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value<'a>> {
        self.members
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Removes `key`, returning its value; the order of the other members is kept.
    pub fn remove(&mut self, key: &str) -> Option<Value<'a>> {
        let index = self.members.iter().position(|(k, _)| k == key)?;
        Some(self.members.remove(index).1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value<'a>)> {
        self.members.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Appends a member; returns false (and changes nothing) when the key is already present.
    pub fn insert_new(&mut self, key: impl Into<Cow<'a, str>>, value: Value<'a>) -> bool {
        let key = key.into();
        if self.contains_key(&key) {
            return false;
        }
        self.members.push((key, value));
        true
    }
}

/// Why a body is not acceptable JSON. The text never quotes the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    InvalidUtf8,
    ByteOrderMark,
    Empty,
    Syntax {
        offset: usize,
        expected: &'static str,
    },
    TooDeep,
    DuplicateKey {
        offset: usize,
    },
    NotAnObject,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::InvalidUtf8 => write!(f, "body is not valid UTF-8"),
            ParseError::ByteOrderMark => write!(f, "body starts with a byte-order mark"),
            ParseError::Empty => write!(f, "body is empty"),
            ParseError::Syntax { offset, expected } => {
                write!(f, "invalid JSON at byte {offset}: expected {expected}")
            }
            ParseError::TooDeep => write!(f, "JSON nested deeper than {MAX_DEPTH} levels"),
            ParseError::DuplicateKey { offset } => {
                write!(f, "duplicate object key at byte {offset}")
            }
            ParseError::NotAnObject => write!(f, "body must be a JSON object"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses a whole body that must be one JSON object.
pub fn parse_object(input: &[u8]) -> Result<Object<'_>, ParseError> {
    match parse(input)? {
        Value::Object(object) => Ok(object),
        _ => Err(ParseError::NotAnObject),
    }
}

/// Parses one JSON value filling the whole input (surrounding whitespace allowed).
pub fn parse(input: &[u8]) -> Result<Value<'_>, ParseError> {
    if input.starts_with(b"\xEF\xBB\xBF") {
        return Err(ParseError::ByteOrderMark);
    }
    let text = std::str::from_utf8(input).map_err(|_| ParseError::InvalidUtf8)?;
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    parser.skip_whitespace();
    if parser.pos == parser.bytes.len() {
        return Err(ParseError::Empty);
    }
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.pos != parser.bytes.len() {
        return Err(parser.error("end of input"));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

/// Objects with more members than this use a hash set to find duplicates.
const LINEAR_DUPLICATE_SCAN: usize = 16;

impl<'a> Parser<'a> {
    fn error(&self, expected: &'static str) -> ParseError {
        ParseError::Syntax {
            offset: self.pos,
            expected,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect_literal(
        &mut self,
        literal: &'static str,
        expected: &'static str,
    ) -> Result<(), ParseError> {
        if self.bytes[self.pos..].starts_with(literal.as_bytes()) {
            self.pos += literal.len();
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1).map(Value::Object),
            Some(b'[') => self.array(depth + 1).map(Value::Array),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self
                .expect_literal("true", "a value")
                .map(|_| Value::Bool(true)),
            Some(b'f') => self
                .expect_literal("false", "a value")
                .map(|_| Value::Bool(false)),
            Some(b'n') => self.expect_literal("null", "a value").map(|_| Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Number),
            _ => Err(self.error("a value")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Object<'a>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        self.pos += 1; // '{'
        let mut object = Object::default();
        let mut seen: Option<HashSet<Cow<'a, str>>> = None;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(object);
        }
        if depth == 1 {
            // Room for a whole signal at once instead of growing 4, 8, 16 members (only the
            // outermost object: nested ones would multiply it).
            object.members.reserve(LINEAR_DUPLICATE_SCAN);
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("a string key"));
            }
            let key_offset = self.pos;
            let key = self.string()?;
            let duplicate = match &mut seen {
                Some(set) => !set.insert(key.clone()),
                None => object.contains_key(&key),
            };
            if duplicate {
                return Err(ParseError::DuplicateKey { offset: key_offset });
            }
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error("':'"));
            }
            self.pos += 1;
            self.skip_whitespace();
            let value = self.value(depth)?;
            object.members.push((key, value));
            if seen.is_none() && object.members.len() > LINEAR_DUPLICATE_SCAN {
                seen = Some(object.members.iter().map(|(k, _)| k.clone()).collect());
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(object);
                }
                _ => return Err(self.error("',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Vec<Value<'a>>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            self.skip_whitespace();
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(items);
                }
                _ => return Err(self.error("',' or ']'")),
            }
        }
    }

    fn number(&mut self) -> Result<Cow<'a, str>, ParseError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("a digit after '.'"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("a digit in the exponent"));
            }
            self.digits();
        }
        Ok(Cow::Borrowed(&self.text[start..self.pos]))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn string(&mut self) -> Result<Cow<'a, str>, ParseError> {
        self.pos += 1; // opening quote
        let start = self.pos;
        self.pos += plain_len(&self.bytes[self.pos..]);
        if self.peek() == Some(b'"') {
            // No escape: the text itself.
            self.pos += 1;
            return Ok(Cow::Borrowed(&self.text[start..self.pos - 1]));
        }
        let mut out = String::from(&self.text[start..self.pos]);
        loop {
            let run_start = self.pos;
            self.pos += plain_len(&self.bytes[self.pos..]);
            // The input is valid UTF-8 and the run stops only at ASCII bytes, so it is a str.
            out.push_str(&self.text[run_start..self.pos]);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => return Err(self.error("no raw control character in a string")),
                None => return Err(self.error("a closing '\"'")),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), ParseError> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let unit = self.hex4()?;
                let c = match unit {
                    0xD800..=0xDBFF => {
                        if !self.bytes[self.pos..].starts_with(b"\\u") {
                            return Err(self.error("a low surrogate after a high surrogate"));
                        }
                        self.pos += 2;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(self.error("a low surrogate after a high surrogate"));
                        }
                        let scalar = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        char::from_u32(scalar).ok_or_else(|| self.error("a valid code point"))?
                    }
                    0xDC00..=0xDFFF => return Err(self.error("no lone low surrogate")),
                    _ => char::from_u32(unit).ok_or_else(|| self.error("a valid code point"))?,
                };
                out.push(c);
                return Ok(());
            }
            _ => return Err(self.error("a valid escape")),
        };
        self.pos += 1;
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("four hex digits"))?;
        let mut unit = 0u32;
        for &d in digits {
            let v = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.error("four hex digits"))?;
            unit = unit * 16 + v;
        }
        self.pos += 4;
        Ok(unit)
    }
}

/// How many leading bytes of `bytes` need no escaping in a JSON string: the index of the first
/// `"`, `\\` or control character (below 0x20), or the length. Eight bytes at a time.
#[inline]
pub fn plain_len(bytes: &[u8]) -> usize {
    scan::<false>(bytes)
}

/// Like [`plain_len`], also stopping at DEL and every non-ASCII byte: the run that Python's
/// `json.dumps` (`ensure_ascii`) copies as it is.
#[inline]
fn printable_ascii_len(bytes: &[u8]) -> usize {
    scan::<true>(bytes)
}

#[inline]
fn scan<const ASCII: bool>(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const QUOTE: u64 = ONES * b'"' as u64;
    const BACKSLASH: u64 = ONES * b'\\' as u64;
    const DEL: u64 = ONES * 0x7F;
    let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20 || (ASCII && b >= 0x7F);
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let q = x ^ QUOTE;
        let b = x ^ BACKSLASH;
        // Non-zero when some byte is below 0x20, or zero after the XOR (the classic
        // "has less than" / "has zero byte" tricks, exact as a yes/no for the whole word).
        let mut found = (x.wrapping_sub(ONES * 0x20) & !x)
            | (q.wrapping_sub(ONES) & !q)
            | (b.wrapping_sub(ONES) & !b);
        if ASCII {
            let d = x ^ DEL;
            found |= x | (d.wrapping_sub(ONES) & !d);
        }
        if found & HIGH != 0 {
            break;
        }
        i += 8;
    }
    while i < bytes.len() && !special(bytes[i]) {
        i += 1;
    }
    i
}

/// Appends `value` as a JSON string, escaped exactly as `serde_json` escapes it (`\"`, `\\\\`,
/// `\\b \\f \\n \\r \\t`, other control characters as `\\u00XX`, everything else as is).
pub fn write_json_string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    loop {
        let i = start + plain_len(&bytes[start..]);
        out.extend_from_slice(&bytes[start..i]);
        let Some(&b) = bytes.get(i) else { break };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0C => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xF)]);
            }
        }
        start = i + 1;
    }
    out.push(b'"');
}

/// Writes a JSON object member by member, as `serde_json` serializes a struct (compact, fields
/// in order). Keys are written as given: they must need no escaping.
pub struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> ObjectWriter<'a> {
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        write_json_string(self.key(key), value);
        self
    }

    /// Nothing when `value` is `None` (`skip_serializing_if = "Option::is_none"`).
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value {
            self.str(key, value);
        }
        self
    }

    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        let out = self.key(key);
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = value;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        out.extend_from_slice(&digits[i..]);
        self
    }

    /// The value's key, for a value the caller writes itself (e.g. a nested object).
    pub fn raw_key(&mut self, key: &str) -> &mut Vec<u8> {
        self.key(key)
    }

    pub fn end(&mut self) {
        self.out.push(b'}');
    }
}

/// Writes `value` as CPython's `json.dumps(value)` does with default arguments: separators
/// `", "` and `": "`, `ensure_ascii=True` (everything outside printable ASCII as a lower-case
/// `\uXXXX` escape, surrogate pairs above U+FFFF), keys in order, numbers as received.
pub fn write_python(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.as_bytes()),
        Value::String(s) => write_python_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_python(item, out);
            }
            out.push(b']');
        }
        Value::Object(object) => write_python_object(object, out),
    }
}

/// [`write_python`] for an object.
pub fn write_python_object(object: &Object, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (key, value)) in object.members.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        write_python_string(key, out);
        out.extend_from_slice(b": ");
        write_python(value, out);
    }
    out.push(b'}');
}

/// A string as `json.dumps` writes it with `ensure_ascii=True`.
pub fn write_python_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    fn unit(out: &mut Vec<u8>, u: u16) {
        out.extend_from_slice(b"\\u");
        for shift in [12, 8, 4, 0] {
            out.push(HEX[usize::from((u >> shift) & 0xF)]);
        }
    }
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    loop {
        // The run stops only before an ASCII byte or at a character's first byte.
        let i = start + printable_ascii_len(&bytes[start..]);
        out.extend_from_slice(&bytes[start..i]);
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        start = i + c.len_utf8();
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    unit(out, *u);
                }
            }
        }
    }
    out.push(b'"');
}

/// `json.dumps(value)` as bytes.
pub fn to_python_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_python(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_as_serde_json_escapes_them() {
        let mut all = String::new();
        for c in (0u32..0x80).chain([0xe9, 0x2028, 0x1F600]) {
            all.push(char::from_u32(c).unwrap());
        }
        for text in [
            "",
            "plain",
            "a\"b\\c",
            "\u{0}\u{1f}\u{7f}é€😀",
            all.as_str(),
        ] {
            let mut out = Vec::new();
            write_json_string(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn object_writer_writes_what_serde_json_writes() {
        #[derive(serde::Serialize)]
        struct S<'a> {
            a: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            b: Option<&'a str>,
            n: u64,
            z: u64,
        }
        for (a, b, n) in [
            ("x\"y", None, 0),
            ("", Some("\n"), u64::MAX),
            ("é", Some(""), 10),
        ] {
            let mut out = Vec::new();
            ObjectWriter::new(&mut out)
                .str("a", a)
                .opt_str("b", b)
                .u64("n", n)
                .u64("z", 7)
                .end();
            let expected = serde_json::to_vec(&S { a, b, n, z: 7 }).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }

    #[test]
    fn python_strings_match_a_char_by_char_ensure_ascii() {
        fn reference(s: &str) -> Vec<u8> {
            let mut out = vec![b'"'];
            for c in s.chars() {
                match c {
                    '"' => out.extend_from_slice(b"\\\""),
                    '\\' => out.extend_from_slice(b"\\\\"),
                    '\n' => out.extend_from_slice(b"\\n"),
                    '\r' => out.extend_from_slice(b"\\r"),
                    '\t' => out.extend_from_slice(b"\\t"),
                    '\u{8}' => out.extend_from_slice(b"\\b"),
                    '\u{c}' => out.extend_from_slice(b"\\f"),
                    ' '..='~' => out.push(c as u8),
                    _ => {
                        let mut units = [0u16; 2];
                        for u in c.encode_utf16(&mut units) {
                            out.extend_from_slice(format!("\\u{u:04x}").as_bytes());
                        }
                    }
                }
            }
            out.push(b'"');
            out
        }
        let mut all = String::new();
        for c in (0u32..0x100).chain([0x2028, 0xFFFF, 0x1F600, 0x10FFFF]) {
            all.push(char::from_u32(c).unwrap());
        }
        for text in [
            "",
            "AAPL",
            "a longer plain string, past eight bytes",
            "é€😀x\u{7f}y",
            &all,
        ] {
            let mut out = Vec::new();
            write_python_string(text, &mut out);
            assert_eq!(out, reference(text), "{text:?}");
        }
    }

    #[test]
    fn plain_len_stops_at_the_first_byte_to_escape() {
        let naive = |b: &[u8]| {
            b.iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .unwrap_or(b.len())
        };
        let ascii = |b: &[u8]| {
            b.iter()
                .position(|&c| c == b'"' || c == b'\\' || !(0x20..0x7F).contains(&c))
                .unwrap_or(b.len())
        };
        let specials = [b'"', b'\\', 0x00, 0x1F, 0x0A, 0x7F, 0x80, 0xFF];
        let fillers = [b'a', b' ', 0x21, 0x5B, 0x5D, 0x7F, 0x80, 0xC3, 0xFF, 0x20];
        for len in 0..40 {
            for &filler in &fillers {
                let plain = vec![filler; len];
                assert_eq!(plain_len(&plain), naive(&plain));
                assert_eq!(printable_ascii_len(&plain), ascii(&plain));
                for at in 0..len {
                    for &special in &specials {
                        let mut bytes = plain.clone();
                        bytes[at] = special;
                        assert_eq!(plain_len(&bytes), naive(&bytes), "{bytes:?}");
                        assert_eq!(printable_ascii_len(&bytes), ascii(&bytes));
                        if at + 1 < len {
                            bytes[at + 1] = special;
                            assert_eq!(plain_len(&bytes), naive(&bytes));
                            assert_eq!(printable_ascii_len(&bytes), ascii(&bytes));
                        }
                    }
                }
            }
        }
    }

    fn dumps(input: &str) -> String {
        String::from_utf8(to_python_bytes(&parse(input.as_bytes()).unwrap())).unwrap()
    }

    #[test]
    fn python_separators_and_order_are_kept() {
        assert_eq!(
            dumps("{\"b\":1,\"a\":[true,false,null,{}],\"c\":[]}"),
            "{\"b\": 1, \"a\": [true, false, null, {}], \"c\": []}"
        );
    }

    #[test]
    fn numbers_keep_their_spelling() {
        assert_eq!(
            dumps("[1.50, -0, 1e400, 2E-3, 0.1]"),
            "[1.50, -0, 1e400, 2E-3, 0.1]"
        );
    }

    #[test]
    fn strings_are_escaped_like_ensure_ascii() {
        let input = "\"caf\\u00e9 \\u2014 \\\"q\\\" \\\\ /\\t\\b\\f\\n\\r\\u0001\\u007f \\ud83d\\ude80 \u{e9}\"";
        assert_eq!(
            dumps(input),
            "\"caf\\u00e9 \\u2014 \\\"q\\\" \\\\ /\\t\\b\\f\\n\\r\\u0001\\u007f \\ud83d\\ude80 \\u00e9\""
        );
    }

    #[test]
    fn rejections_name_the_problem() {
        let cases: &[(&str, &[u8], ParseError)] = &[
            ("empty body", b"", ParseError::Empty),
            ("only whitespace", b" \n", ParseError::Empty),
            (
                "byte-order mark",
                b"\xEF\xBB\xBF{}",
                ParseError::ByteOrderMark,
            ),
            (
                "invalid utf-8",
                b"{\"a\":\"\xff\"}",
                ParseError::InvalidUtf8,
            ),
            ("array at top", b"[1]", ParseError::NotAnObject),
            ("scalar at top", b"1", ParseError::NotAnObject),
            (
                "duplicate key at depth",
                b"{\"a\":{\"b\":1,\"b\":2}}",
                ParseError::DuplicateKey { offset: 12 },
            ),
        ];
        for (description, input, expected) in cases {
            let got = parse_object(input).unwrap_err();
            assert_eq!(&got, expected, "{description}");
        }
    }

    #[test]
    fn syntax_errors_are_rejected() {
        let cases: &[(&str, &str)] = &[
            ("truncated", "{\"a\": 1"),
            ("trailing comma", "{\"a\": 1,}"),
            ("trailing garbage", "{} x"),
            ("single quotes", "{'a': 1}"),
            ("NaN", "{\"a\": NaN}"),
            ("Infinity", "{\"a\": Infinity}"),
            ("leading zero", "{\"a\": 01}"),
            ("plus sign", "{\"a\": +1}"),
            ("bare dot", "{\"a\": 1.}"),
            ("hex", "{\"a\": 0x10}"),
            ("raw newline in string", "{\"a\": \"x\ny\"}"),
            ("lone high surrogate", "{\"a\": \"\\ud800\"}"),
            ("lone low surrogate", "{\"a\": \"\\udc00\"}"),
            ("bad escape", "{\"a\": \"\\x41\"}"),
            ("unquoted key", "{a: 1}"),
            ("comment", "{\"a\": 1 /* c */}"),
            ("two objects", "{}{}"),
        ];
        for (description, input) in cases {
            assert!(
                matches!(parse(input.as_bytes()), Err(ParseError::Syntax { .. })),
                "{description}: {:?}",
                parse(input.as_bytes())
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing_further() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(parse(deep.as_bytes()), Err(ParseError::TooDeep));
        let at_limit = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(at_limit.as_bytes()).is_ok());
    }

    #[test]
    fn many_keys_still_detect_duplicates() {
        let mut body = String::from("{");
        for i in 0..100 {
            body.push_str(&format!("\"k{i}\": {i},"));
        }
        body.push_str("\"k7\": 0}");
        assert!(matches!(
            parse_object(body.as_bytes()),
            Err(ParseError::DuplicateKey { .. })
        ));
    }
}
