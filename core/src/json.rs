//! Streaming the TOC JSON into a sink, one entry at a time, with serde + serde-json-core.
//!
//! The deserializer runs without an unescape buffer, so every string arrives as its raw,
//! still-escaped text borrowed from the input (no copy, no size limit). [`unescape`] then decodes
//! it fully, surrogate pairs included, which serde-json-core itself rejects. Map keys go only
//! through `deserialize_str` (serde-json-core panics on other key paths). Unknown keys are
//! skipped, and nesting depth is checked before parsing because skipping recurses.

use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;
use serde::de::{self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json_core::de::Deserializer;

use crate::error::{Error, Result};

/// Deepest JSON nesting accepted. A TOC needs 4 (top object, entries array, entry object,
/// xattrs); unknown values may nest up to here.
pub const MAX_DEPTH: usize = 32;

/// One TOC entry as it appears in the JSON: raw (escaped) strings and numbers, absent ones zero.
#[derive(Debug, Default)]
pub struct RawEntry<'de> {
    /// `name`.
    pub name: Option<&'de str>,
    /// `type`.
    pub kind: Option<&'de str>,
    /// `size`.
    pub size: i64,
    /// `modtime`.
    pub modtime: Option<&'de str>,
    /// `linkName`.
    pub link_name: Option<&'de str>,
    /// `mode`.
    pub mode: i64,
    /// `uid`.
    pub uid: i64,
    /// `gid`.
    pub gid: i64,
    /// `offset`.
    pub offset: i64,
    /// `endOffset`.
    pub end_offset: i64,
    /// `innerOffset`.
    pub inner_offset: i64,
    /// `devMajor`.
    pub dev_major: i64,
    /// `devMinor`.
    pub dev_minor: i64,
    /// `digest`.
    pub digest: Option<&'de str>,
    /// `chunkOffset`.
    pub chunk_offset: i64,
    /// `chunkSize`.
    pub chunk_size: i64,
    /// `chunkDigest`.
    pub chunk_digest: Option<&'de str>,
    /// `chunkType`.
    pub chunk_type: Option<&'de str>,
    /// (name, base64 value), both raw.
    pub xattrs: Vec<(&'de str, &'de str)>,
}

impl RawEntry<'_> {
    fn clear(&mut self) {
        let mut xattrs = core::mem::take(&mut self.xattrs);
        xattrs.clear();
        *self = RawEntry { xattrs, ..RawEntry::default() };
    }
}

/// Receives entries as they are parsed.
pub trait EntrySink {
    /// Takes one entry; an error stops the parse and is returned from [`parse_toc`].
    fn entry(&mut self, entry: &RawEntry<'_>) -> Result<()>;
}

fn hex4(s: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &b in s.get(..4)? {
        v = (v << 4) | char::from(b).to_digit(16)?;
    }
    Some(v)
}

/// Decodes a raw JSON string body (without the quotes) into `out` (appending).
///
/// Handles every JSON escape; a valid surrogate pair becomes one code point, and a lone
/// surrogate becomes U+FFFD, as Go's decoder does. Raw control characters are rejected.
pub fn unescape(raw: &str, out: &mut Vec<u8>) -> core::result::Result<(), &'static str> {
    let bytes = raw.as_bytes();
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        if b < 0x20 {
            return Err("control character in string");
        }
        if b != b'\\' {
            let rest = bytes.get(i..).unwrap_or_default();
            let run_len = rest.iter().position(|&c| c == b'\\' || c < 0x20).unwrap_or(rest.len());
            out.extend_from_slice(rest.get(..run_len).unwrap_or_default());
            i += run_len;
            continue;
        }
        let esc = *bytes.get(i + 1).ok_or("string ends in a backslash")?;
        i += 2;
        let simple = match esc {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => return Err("invalid escape sequence"),
        };
        if let Some(c) = simple {
            out.push(c);
            continue;
        }
        let unit = hex4(bytes.get(i..).unwrap_or_default()).ok_or("invalid \\u escape")?;
        i += 4;
        let code = if (0xd800..0xdc00).contains(&unit) {
            let low = if bytes.get(i) == Some(&b'\\') && bytes.get(i + 1) == Some(&b'u') {
                hex4(bytes.get(i + 2..).unwrap_or_default()).filter(|l| (0xdc00..0xe000).contains(l))
            } else {
                None
            };
            match low {
                Some(low) => {
                    i += 6;
                    0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
                }
                None => 0xfffd,
            }
        } else if (0xdc00..0xe000).contains(&unit) {
            0xfffd
        } else {
            unit
        };
        let c = char::from_u32(code).unwrap_or('\u{fffd}');
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    Ok(())
}

/// Parses a whole TOC, feeding each entry to `sink`, and returns the `version` field.
pub fn parse_toc<S: EntrySink>(json: &[u8], sink: &mut S) -> Result<i64> {
    let too_deep = Cell::new(false);
    let mut state = State::new(sink, &too_deep);
    let mut de = Deserializer::new(json, None);
    let parsed = (&mut de).deserialize_map(TopVisitor { state: &mut state });
    if let Some(e) = state.error {
        return Err(e);
    }
    if too_deep.get() {
        return Err(Error::BadJson { entry: state.count, what: "nesting too deep" });
    }
    let bad = |what| Error::BadJson { entry: state.count, what };
    parsed.map_err(|e| bad(json_error_text(&e)))?;
    de.end().map_err(|e| bad(json_error_text(&e)))?;
    state.version.ok_or(bad("no \"version\" field"))
}

/// A place to cut a TOC in two, so that its halves can be parsed at the same time: a comma
/// between two entries of the `entries` array, which must be the TOC object's last member.
///
/// [`Split::find`] only guesses; the guess is proven by parsing. [`parse_toc_head`] succeeds only
/// if the text before the comma ends between two entries of the top-level `entries` array, and
/// [`parse_toc_tail`] only if the text from the comma on is a run of complete entries closing
/// that array and then the TOC. Both together mean one pass over the whole text would have read
/// exactly the same entries, so their results can be joined. Anything else (a guess that landed
/// in a string, a TOC with members after `entries`, a malformed TOC) is left to [`parse_toc`].
#[cfg(any(feature = "std", feature = "fuzzing"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Position of the comma.
    pub comma: usize,
    /// Position of the `]` that closes the entries array.
    pub close: usize,
}

#[cfg(any(feature = "std", feature = "fuzzing"))]
fn is_json_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(any(feature = "std", feature = "fuzzing"))]
impl Split {
    /// Guesses a cut near the middle: the first comma there followed (after white space) by `{`.
    pub fn find(json: &[u8]) -> Option<Split> {
        let mut head = json;
        for expected in [b'}', b']'] {
            while let [before @ .., last] = head
                && is_json_space(*last)
            {
                head = before;
            }
            match head {
                [before @ .., last] if *last == expected => head = before,
                _ => return None,
            }
        }
        let close = head.len();
        let mut at = json.len() / 2;
        while at < close {
            let comma = at + json.get(at..close)?.iter().position(|&b| b == b',')?;
            let next = json.get(comma + 1..close)?.iter().find(|&&b| !is_json_space(b));
            if next == Some(&b'{') {
                return Some(Split { comma, close });
            }
            at = comma + 1;
        }
        None
    }

    /// The text the second half is parsed from, once the comma is replaced by `[`: that bracket,
    /// the entries, and the `]` closing them.
    pub fn tail(self) -> core::ops::Range<usize> {
        self.comma..self.close + 1
    }
}

#[cfg(any(feature = "std", feature = "fuzzing"))]
/// Parses the first half of a [`Split`] TOC (the text before its comma). Returns the `version`
/// field when that text is a valid start of a TOC which ends between two entries of its
/// `entries` array, with every entry taken by `sink`; `None` otherwise.
pub fn parse_toc_head<S: EntrySink>(head: &[u8], sink: &mut S) -> Option<i64> {
    let too_deep = Cell::new(false);
    let mut state = State::new(sink, &too_deep);
    let mut de = Deserializer::new(head, None);
    let parsed = (&mut de).deserialize_map(TopVisitor { state: &mut state });
    // The text stops where the next entry would start: the entries array must be the one
    // asking for more, right after a complete entry.
    let cut_between_entries = matches!(parsed, Err(serde_json_core::de::Error::EofWhileParsingList));
    let clean = state.error.is_none() && !too_deep.get() && state.between_entries;
    if cut_between_entries && clean { state.version } else { None }
}

#[cfg(feature = "std")]
/// Parses the second half of a [`Split`] TOC: `tail` is the text at [`Split::tail`] with its
/// first byte (the comma) replaced by `[`. True when it is a complete array of entries, every
/// one taken by `sink`.
pub fn parse_toc_tail<S: EntrySink>(tail: &[u8], sink: &mut S) -> bool {
    let too_deep = Cell::new(false);
    let mut state = State::new(sink, &too_deep);
    let mut de = Deserializer::new(tail, None);
    let parsed = EntriesSeed { state: &mut state }.deserialize(&mut de);
    parsed.is_ok() && de.end().is_ok() && state.error.is_none() && !too_deep.get()
}

fn json_error_text(e: &serde_json_core::de::Error) -> &'static str {
    use serde_json_core::de::Error as E;
    match e {
        E::EofWhileParsingList | E::EofWhileParsingObject | E::EofWhileParsingString | E::EofWhileParsingValue => {
            "unexpected end of JSON"
        }
        E::ExpectedColon => "expected ':'",
        E::ExpectedListCommaOrEnd => "expected ',' or ']'",
        E::ExpectedObjectCommaOrEnd => "expected ',' or '}'",
        E::ExpectedSomeIdent => "invalid literal",
        E::ExpectedSomeValue => "expected a value",
        E::InvalidNumber => "invalid or out-of-range number",
        E::InvalidType => "value of the wrong type",
        E::InvalidUnicodeCodePoint => "invalid UTF-8",
        E::InvalidEscapeSequence => "invalid escape sequence",
        E::KeyMustBeAString => "object key is not a string",
        E::TrailingCharacters => "trailing characters",
        E::TrailingComma => "trailing comma",
        _ => "malformed JSON",
    }
}

struct State<'s, 'de, S> {
    sink: &'s mut S,
    /// The first error raised by the sink or by field decoding (serde errors lose their payload).
    error: Option<Error>,
    /// Entries completed so far.
    count: usize,
    entry: RawEntry<'de>,
    /// Set when an unknown value nests deeper than `MAX_DEPTH`.
    too_deep: &'s Cell<bool>,
    /// The last `version` field seen.
    version: Option<i64>,
    /// True from the end of an entry of the top-level `entries` array until the next one
    /// starts or the array ends: where [`parse_toc_head`] may find its text cut.
    between_entries: bool,
}

impl<'s, S> State<'s, '_, S> {
    fn new(sink: &'s mut S, too_deep: &'s Cell<bool>) -> Self {
        State {
            sink,
            error: None,
            count: 0,
            entry: RawEntry::default(),
            too_deep,
            version: None,
            between_entries: false,
        }
    }
}

impl<S> State<'_, '_, S> {
    fn fail<E: de::Error>(&mut self, e: Error) -> E {
        if self.error.is_none() {
            self.error = Some(e);
        }
        E::custom("aborted")
    }
}

/// Skips one value of any shape. serde-json-core recurses into nested arrays and objects, so
/// the depth is counted here and refused past `MAX_DEPTH`: no input can exhaust the stack.
struct Skip<'a> {
    /// Nesting level of the value skipped; the TOC's top object is level 1.
    depth: usize,
    too_deep: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Skip<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> core::result::Result<(), D::Error> {
        d.deserialize_ignored_any(self)
    }
}

impl Skip<'_> {
    /// Refuses an array or object at `depth` past `MAX_DEPTH`, before going into it.
    fn enter<E: de::Error>(&self) -> core::result::Result<(), E> {
        if self.depth > MAX_DEPTH {
            self.too_deep.set(true);
            return Err(E::custom("nesting too deep"));
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for Skip<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_unit<E: de::Error>(self) -> core::result::Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> core::result::Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> core::result::Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> core::result::Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> core::result::Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> core::result::Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> core::result::Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> core::result::Result<(), A::Error> {
        self.enter()?;
        while seq.next_element_seed(Skip { depth: self.depth + 1, too_deep: self.too_deep })?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> core::result::Result<(), A::Error> {
        self.enter()?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Skip { depth: self.depth + 1, too_deep: self.too_deep })?;
        }
        Ok(())
    }
}

/// A raw string key, matched against known names after unescaping when needed.
struct KeySeed;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Version,
    Entries,
    Name,
    Type,
    Size,
    ModTime,
    LinkName,
    Mode,
    Uid,
    Gid,
    Offset,
    EndOffset,
    InnerOffset,
    DevMajor,
    DevMinor,
    Xattrs,
    Digest,
    ChunkOffset,
    ChunkSize,
    ChunkDigest,
    ChunkType,
    Other,
}

fn key_of(name: &[u8]) -> Key {
    match name {
        b"version" => Key::Version,
        b"entries" => Key::Entries,
        b"name" => Key::Name,
        b"type" => Key::Type,
        b"size" => Key::Size,
        b"modtime" => Key::ModTime,
        b"linkName" => Key::LinkName,
        b"mode" => Key::Mode,
        b"uid" => Key::Uid,
        b"gid" => Key::Gid,
        b"offset" => Key::Offset,
        b"endOffset" => Key::EndOffset,
        b"innerOffset" => Key::InnerOffset,
        b"devMajor" => Key::DevMajor,
        b"devMinor" => Key::DevMinor,
        b"xattrs" => Key::Xattrs,
        b"digest" => Key::Digest,
        b"chunkOffset" => Key::ChunkOffset,
        b"chunkSize" => Key::ChunkSize,
        b"chunkDigest" => Key::ChunkDigest,
        b"chunkType" => Key::ChunkType,
        _ => Key::Other,
    }
}

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> core::result::Result<Key, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, raw: &str) -> core::result::Result<Key, E> {
        if !raw.contains('\\') {
            return Ok(key_of(raw.as_bytes()));
        }
        // Known keys are short; anything longer is unknown whatever its escapes say.
        if raw.len() > 64 {
            return Ok(Key::Other);
        }
        let mut buf = Vec::new();
        unescape(raw, &mut buf).map_err(E::custom)?;
        Ok(key_of(&buf))
    }
}

/// A raw string borrowed from the input, or `None` for `null`.
struct RawStr;

impl<'de> DeserializeSeed<'de> for RawStr {
    type Value = Option<&'de str>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> core::result::Result<Self::Value, D::Error> {
        d.deserialize_option(RawStrVisitor)
    }
}

struct RawStrVisitor;

impl<'de> Visitor<'de> for RawStrVisitor {
    type Value = Option<&'de str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_none<E: de::Error>(self) -> core::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> core::result::Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
    fn visit_borrowed_str<E: de::Error>(self, raw: &'de str) -> core::result::Result<Self::Value, E> {
        Ok(Some(raw))
    }
}

/// A JSON integer, or 0 for `null`.
struct Int;

impl<'de> DeserializeSeed<'de> for Int {
    type Value = i64;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> core::result::Result<i64, D::Error> {
        d.deserialize_option(IntVisitor)
    }
}

struct IntVisitor;

impl<'de> Visitor<'de> for IntVisitor {
    type Value = i64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }
    fn visit_none<E: de::Error>(self) -> core::result::Result<i64, E> {
        Ok(0)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> core::result::Result<i64, D::Error> {
        d.deserialize_i64(self)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> core::result::Result<i64, E> {
        Ok(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> core::result::Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom("integer out of range"))
    }
}

struct TopVisitor<'a, 's, 'de, S> {
    state: &'a mut State<'s, 'de, S>,
}

impl<'de, S: EntrySink> Visitor<'de> for TopVisitor<'_, '_, 'de, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOC object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> core::result::Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::Version => self.state.version = Some(map.next_value_seed(Int)?),
                Key::Entries => map.next_value_seed(EntriesSeed { state: &mut *self.state })?,
                _ => map.next_value_seed(Skip { depth: 2, too_deep: self.state.too_deep })?,
            }
        }
        Ok(())
    }
}

struct EntriesSeed<'a, 's, 'de, S> {
    state: &'a mut State<'s, 'de, S>,
}

impl<'de, S: EntrySink> DeserializeSeed<'de> for EntriesSeed<'_, '_, 'de, S> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> core::result::Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: EntrySink> Visitor<'de> for EntriesSeed<'_, '_, 'de, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of entries")
    }
    fn visit_none<E: de::Error>(self) -> core::result::Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> core::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> core::result::Result<(), A::Error> {
        while seq.next_element_seed(EntrySeed { state: &mut *self.state })?.is_some() {
            self.state.between_entries = true;
        }
        self.state.between_entries = false;
        Ok(())
    }
}

struct EntrySeed<'a, 's, 'de, S> {
    state: &'a mut State<'s, 'de, S>,
}

impl<'de, S: EntrySink> DeserializeSeed<'de> for EntrySeed<'_, '_, 'de, S> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> core::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: EntrySink> Visitor<'de> for EntrySeed<'_, '_, 'de, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOC entry object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> core::result::Result<(), A::Error> {
        let state = self.state;
        state.between_entries = false;
        state.entry.clear();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let e = &mut state.entry;
            match key {
                Key::Name => e.name = map.next_value_seed(RawStr)?,
                Key::Type => e.kind = map.next_value_seed(RawStr)?,
                Key::Size => e.size = map.next_value_seed(Int)?,
                Key::ModTime => e.modtime = map.next_value_seed(RawStr)?,
                Key::LinkName => e.link_name = map.next_value_seed(RawStr)?,
                Key::Mode => e.mode = map.next_value_seed(Int)?,
                Key::Uid => e.uid = map.next_value_seed(Int)?,
                Key::Gid => e.gid = map.next_value_seed(Int)?,
                Key::Offset => e.offset = map.next_value_seed(Int)?,
                Key::EndOffset => e.end_offset = map.next_value_seed(Int)?,
                Key::InnerOffset => e.inner_offset = map.next_value_seed(Int)?,
                Key::DevMajor => e.dev_major = map.next_value_seed(Int)?,
                Key::DevMinor => e.dev_minor = map.next_value_seed(Int)?,
                Key::Digest => e.digest = map.next_value_seed(RawStr)?,
                Key::ChunkOffset => e.chunk_offset = map.next_value_seed(Int)?,
                Key::ChunkSize => e.chunk_size = map.next_value_seed(Int)?,
                Key::ChunkDigest => e.chunk_digest = map.next_value_seed(RawStr)?,
                Key::ChunkType => e.chunk_type = map.next_value_seed(RawStr)?,
                Key::Xattrs => map.next_value_seed(XattrsSeed { out: &mut e.xattrs })?,
                _ => map.next_value_seed(Skip { depth: 4, too_deep: state.too_deep })?,
            }
        }
        let result = state.sink.entry(&state.entry);
        if let Err(err) = result {
            return Err(state.fail(err));
        }
        state.count += 1;
        Ok(())
    }
}

struct XattrsSeed<'a, 'de> {
    out: &'a mut Vec<(&'de str, &'de str)>,
}

impl<'de> DeserializeSeed<'de> for XattrsSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> core::result::Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for XattrsSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an xattrs object")
    }
    fn visit_none<E: de::Error>(self) -> core::result::Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> core::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> core::result::Result<(), A::Error> {
        while let Some(name) = map.next_key_seed(RawKey)? {
            if let Some(value) = map.next_value_seed(RawStr)? {
                self.out.push((name, value));
            }
        }
        Ok(())
    }
}

/// A map key kept as raw text.
struct RawKey;

impl<'de> DeserializeSeed<'de> for RawKey {
    type Value = &'de str;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> core::result::Result<&'de str, D::Error> {
        d.deserialize_str(RawKeyVisitor)
    }
}

struct RawKeyVisitor;

impl<'de> Visitor<'de> for RawKeyVisitor {
    type Value = &'de str;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E: de::Error>(self, raw: &'de str) -> core::result::Result<&'de str, E> {
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn unesc(raw: &str) -> core::result::Result<String, &'static str> {
        let mut out = Vec::new();
        unescape(raw, &mut out)?;
        String::from_utf8(out).map_err(|_| "utf8")
    }

    #[test]
    fn unescapes_everything_json_allows() {
        assert_eq!(unesc(r#"a\u0026b\"\\\/\b\f\n\r\t"#).unwrap(), "a&b\"\\/\u{8}\u{c}\n\r\t");
        assert_eq!(unesc(r"\ud83d\ude00 \u00e9\u2028").unwrap(), "😀 é\u{2028}");
        assert_eq!(unesc(r"x\ud83dy").unwrap(), "x\u{fffd}y");
        assert_eq!(unesc(r"\ude00").unwrap(), "\u{fffd}");
        assert_eq!(unesc("日本語").unwrap(), "日本語");
        assert!(unesc(r"\x").is_err());
        assert!(unesc(r"\u12").is_err());
        assert!(unesc("a\u{1}").is_err());
        assert!(unesc("\\").is_err());
    }

    #[derive(Default)]
    struct Collect(Vec<(String, String, i64, usize)>);

    impl EntrySink for Collect {
        fn entry(&mut self, e: &RawEntry<'_>) -> Result<()> {
            let mut name = Vec::new();
            unescape(e.name.unwrap_or(""), &mut name).map_err(|what| Error::BadJson { entry: 0, what })?;
            let name = String::from_utf8(name).unwrap_or_default();
            self.0.push((name, String::from(e.kind.unwrap_or("")), e.size, e.xattrs.len()));
            Ok(())
        }
    }

    #[test]
    fn parses_entries_and_skips_unknown_keys() {
        let json = br#"{"version":1,"tarSplitDigest":"x","entries":[
            {"name":"a\u0026b\ud83d\ude00","type":"reg","size":5,"NumLink":0,"accesstime":"t","junk":[{"a":[1]}],
             "xattrs":{"user.\u0041":"YmFy","k":null}},
            {"name":"d","type":"dir","mode":null}]}"#;
        let mut sink = Collect::default();
        assert_eq!(parse_toc(json, &mut sink).unwrap(), 1);
        assert_eq!(sink.0[0], (String::from("a&b😀"), String::from("reg"), 5, 1));
        assert_eq!(sink.0[1].0, "d");
    }

    #[test]
    fn rejects_bad_json_without_panicking() {
        let cases: &[&[u8]] = &[
            b"",
            b"{",
            b"[]",
            b"{\"entries\":[}",
            b"{\"version\":1,\"entries\":[{\"name\":5}]}",
            b"{\"version\":1,\"entries\":[{\"size\":1.5}]}",
            b"{\"version\":1,\"entries\":[{\"xattrs\":{\"a\":1}}]}",
            b"{\"version\":1,\"entries\":[{\"xattrs\":{1:\"a\"}}]}",
            b"{\"version\":1,\"entries\":[{\"size\":99999999999999999999}]}",
            b"{\"version\":1} x",
            b"{\"entries\":[]}",
        ];
        for case in cases {
            assert!(parse_toc(case, &mut Collect::default()).is_err(), "{:?}", core::str::from_utf8(case));
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut json = Vec::from(&b"{\"version\":1,\"x\":"[..]);
        json.extend(core::iter::repeat_n(b'[', 100_000));
        json.extend(core::iter::repeat_n(b']', 100_000));
        json.push(b'}');
        assert!(matches!(parse_toc(&json, &mut Collect::default()), Err(Error::BadJson { .. })));
        // Brackets inside strings do not count.
        let ok = br#"{"version":1,"entries":[{"name":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}]}"#;
        assert!(parse_toc(ok, &mut Collect::default()).is_ok());
    }
}
