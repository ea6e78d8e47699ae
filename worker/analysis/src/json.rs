//! A byte-level JSON cursor over one feature's bytes.
//!
//! The splitter hands each feature to a worker thread as a byte slice; this cursor walks it
//! without building `serde_json::Value`s, validates the full JSON grammar on the way (so a
//! malformed feature is an error, not a silently skipped one), and reports errors with the
//! byte offset in the whole input. Nothing here recurses, so hostile nesting cannot overflow
//! the stack; the splitter has already bounded the depth.

use std::borrow::Cow;

use super::error::{AnalysisError, ErrorKind};

/// The JSON type of a value, as reported in a property's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum JsonType {
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
}

impl JsonType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Boolean => "boolean",
            JsonType::Number => "number",
            JsonType::String => "string",
            JsonType::Array => "array",
            JsonType::Object => "object",
        }
    }
}

/// Position in a byte slice that is part of a larger input starting `base` bytes earlier.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: u64,
}

type Result<T> = std::result::Result<T, AnalysisError>;

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8], base: u64) -> Self {
        Cursor {
            bytes,
            pos: 0,
            base,
        }
    }

    /// A cursor over the same bytes, at `pos`: used to come back to a member whose meaning
    /// was only known once a later member (the geometry's `type`) had been read.
    pub(crate) fn at(&self, pos: usize) -> Cursor<'a> {
        Cursor {
            bytes: self.bytes,
            pos,
            base: self.base,
        }
    }

    /// The bytes between two positions of this cursor.
    pub(crate) fn slice(&self, start: usize, end: usize) -> &'a [u8] {
        &self.bytes[start..end]
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Offset of the cursor in the whole input.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub(crate) fn error(&self, kind: ErrorKind, message: impl Into<String>) -> AnalysisError {
        AnalysisError::at(kind, self.offset(), message)
    }

    fn unexpected(&self, expected: &str) -> AnalysisError {
        match self.bytes.get(self.pos) {
            None => self.error(
                ErrorKind::Truncated,
                format!("input ends where {expected} was expected"),
            ),
            Some(&byte) => self.error(
                ErrorKind::InvalidJson,
                format!("expected {expected}, found {}", describe_byte(byte)),
            ),
        }
    }

    #[inline]
    pub(crate) fn skip_ws(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// Next non-whitespace byte, not consumed.
    #[inline]
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    pub(crate) fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    #[inline]
    pub(crate) fn expect(&mut self, byte: u8, expected: &str) -> Result<()> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    /// After the first element of an array or member of an object: `true` if another
    /// follows (a `,` was consumed), `false` if `close` was consumed.
    #[inline]
    pub(crate) fn more(&mut self, close: u8) -> Result<bool> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(false)
            }
            _ => Err(self.unexpected(if close == b']' {
                "',' or ']'"
            } else {
                "',' or '}'"
            })),
        }
    }

    /// Requires the end of the slice (only whitespace left).
    pub(crate) fn finish(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(b) => Err(self.error(
                ErrorKind::InvalidJson,
                format!("unexpected {} after the end of the value", describe_byte(b)),
            )),
        }
    }

    /// Reads a string and returns its raw (still escaped) content and whether it had escapes.
    fn string_raw(&mut self) -> Result<(&'a [u8], bool)> {
        self.expect(b'"', "a string")?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(self.error(ErrorKind::Truncated, "input ends inside a string"));
            };
            match b {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.pos += 1;
                    match self.bytes.get(self.pos) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            let unit = self.hex4_at(self.pos + 1)?;
                            self.pos += 5;
                            // A UTF-16 surrogate must come as a high-low pair, as serde_json
                            // (and `unescape`) require: a lone one encodes no character.
                            if (0xdc00..0xe000).contains(&unit) {
                                return Err(self.error(
                                    ErrorKind::InvalidJson,
                                    "a \\u escape holds a lone low surrogate",
                                ));
                            }
                            if (0xd800..0xdc00).contains(&unit) {
                                let low = match self.bytes.get(self.pos..self.pos + 2) {
                                    Some(b"\\u") => self.hex4_at(self.pos + 2)?,
                                    _ => 0,
                                };
                                if !(0xdc00..0xe000).contains(&low) {
                                    return Err(self.error(
                                        ErrorKind::InvalidJson,
                                        "a \\u escape holds a high surrogate without its low half",
                                    ));
                                }
                                self.pos += 6;
                            }
                        }
                        None => {
                            return Err(
                                self.error(ErrorKind::Truncated, "input ends inside a string")
                            );
                        }
                        Some(_) => {
                            return Err(
                                self.error(ErrorKind::InvalidJson, "invalid escape in a string")
                            );
                        }
                    }
                }
                0..=0x1f => {
                    return Err(self.error(
                        ErrorKind::InvalidJson,
                        "unescaped control character in a string",
                    ));
                }
                _ => self.pos += 1,
            }
        }
        let raw = &self.bytes[start..self.pos];
        if std::str::from_utf8(raw).is_err() {
            return Err(AnalysisError::at(
                ErrorKind::InvalidJson,
                self.base + start as u64,
                "string is not valid UTF-8",
            ));
        }
        self.pos += 1;
        Ok((raw, escaped))
    }

    /// The value of the four hex digits at `pos` (after a `\\u`).
    fn hex4_at(&self, pos: usize) -> Result<u32> {
        match self.bytes.get(pos..pos + 4) {
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => Ok(hex
                .iter()
                .fold(0, |v, &h| v * 16 + char::from(h).to_digit(16).unwrap_or(0))),
            _ => Err(AnalysisError::at(
                ErrorKind::InvalidJson,
                self.base + pos as u64,
                "\\u escape needs four hex digits",
            )),
        }
    }

    /// Reads a string and returns its decoded value.
    pub(crate) fn string(&mut self) -> Result<Cow<'a, str>> {
        let start = self.offset();
        let (raw, escaped) = self.string_raw()?;
        // string_raw checked UTF-8.
        let text = std::str::from_utf8(raw)
            .map_err(|_| AnalysisError::at(ErrorKind::InvalidJson, start, "invalid UTF-8"))?;
        if !escaped {
            return Ok(Cow::Borrowed(text));
        }
        unescape(text)
            .map(Cow::Owned)
            .ok_or_else(|| AnalysisError::at(ErrorKind::InvalidJson, start, "invalid \\u escape"))
    }

    /// Reads a number.
    #[inline]
    pub(crate) fn number(&mut self) -> Result<f64> {
        self.skip_ws();
        let start = self.pos;
        let bytes = self.bytes;
        let mut i = start;
        let negative = bytes.get(i) == Some(&b'-');
        if negative {
            i += 1;
        }
        let mut mantissa: u64 = 0;
        let mut digits = 0u32;
        let int_start = i;
        i = accumulate_digits(bytes, i, &mut mantissa, &mut digits);
        if i == int_start {
            self.pos = i;
            return Err(self.unexpected("a number"));
        }
        if bytes[int_start] == b'0' && i - int_start > 1 {
            self.pos = int_start;
            return Err(self.error(ErrorKind::InvalidJson, "number with a leading zero"));
        }
        let mut exponent: i32 = 0;
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            let frac_start = i;
            i = accumulate_digits(bytes, i, &mut mantissa, &mut digits);
            if i == frac_start {
                self.pos = i;
                return Err(self.unexpected("a digit after the decimal point"));
            }
            exponent = -((i - frac_start) as i32);
        }
        let mut simple = true;
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            simple = false;
            i += 1;
            if matches!(bytes.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let exp_start = i;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == exp_start {
                self.pos = i;
                return Err(self.unexpected("a digit in the exponent"));
            }
        }
        self.pos = i;
        // Clinger's fast path: a mantissa below 2^53 and a power of ten that is itself exact
        // give a correctly rounded quotient or product. Everything else goes to the standard
        // library's (correctly rounding) parser.
        if simple && digits <= 19 && mantissa < (1u64 << 53) && exponent >= -22 {
            let value = mantissa as f64 / POW10[(-exponent) as usize];
            return Ok(if negative { -value } else { value });
        }
        let text = std::str::from_utf8(&bytes[start..i]).map_err(|_| {
            AnalysisError::at(
                ErrorKind::InvalidJson,
                self.base + start as u64,
                "bad number",
            )
        })?;
        text.parse::<f64>().map_err(|_| {
            AnalysisError::at(
                ErrorKind::InvalidJson,
                self.base + start as u64,
                "bad number",
            )
        })
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<()> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else if word.starts_with(&self.bytes[self.pos..]) {
            self.pos = self.bytes.len();
            Err(self.error(ErrorKind::Truncated, "input ends inside a literal"))
        } else {
            Err(self.error(ErrorKind::InvalidJson, "invalid literal"))
        }
    }

    /// Consumes `null` if it is next.
    pub(crate) fn eat_null(&mut self) -> Result<bool> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Skips one value of any type, validating it, and returns its type.
    pub(crate) fn skip_value(&mut self) -> Result<JsonType> {
        // Open containers, innermost last: true for an object.
        let mut open: Vec<bool> = Vec::new();
        let mut first_type = None;
        loop {
            // A value is expected here.
            let value_type = match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    if self.eat(b'}') {
                        JsonType::Object
                    } else {
                        open.push(true);
                        first_type.get_or_insert(JsonType::Object);
                        self.string_raw()?;
                        self.expect(b':', "':'")?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    if self.eat(b']') {
                        JsonType::Array
                    } else {
                        open.push(false);
                        first_type.get_or_insert(JsonType::Array);
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string_raw()?;
                    JsonType::String
                }
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                    JsonType::Number
                }
                Some(b't') => {
                    self.literal(b"true")?;
                    JsonType::Boolean
                }
                Some(b'f') => {
                    self.literal(b"false")?;
                    JsonType::Boolean
                }
                Some(b'n') => {
                    self.literal(b"null")?;
                    JsonType::Null
                }
                _ => return Err(self.unexpected("a JSON value")),
            };
            first_type.get_or_insert(value_type);
            // After a value: close containers until one continues.
            loop {
                let Some(&is_object) = open.last() else {
                    return Ok(first_type.unwrap_or(value_type));
                };
                let close = if is_object { b'}' } else { b']' };
                if self.more(close)? {
                    if is_object {
                        self.string_raw()?;
                        self.expect(b':', "':'")?;
                    }
                    break;
                }
                open.pop();
            }
        }
    }
}

/// Powers of ten that are exact in an f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

fn describe_byte(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}'", byte as char)
    } else {
        format!("byte 0x{byte:02x}")
    }
}

/// Decodes JSON escapes in a string whose escapes are already known to be well formed.
fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let high = hex4(&mut chars)?;
                let code = if (0xd800..0xdc00).contains(&high) {
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let low = hex4(&mut chars)?;
                    if !(0xdc00..0xe000).contains(&low) {
                        return None;
                    }
                    0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)
                } else {
                    high
                };
                out.push(char::from_u32(code)?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut value = 0;
    for _ in 0..4 {
        value = value * 16 + chars.next()?.to_digit(16)?;
    }
    Some(value)
}

/// Reads the decimal digits from `i` into `mantissa` (wrapping: `digits` tells the caller
/// whether the value still fits the fast path) and returns the index after the last digit.
/// Shared by a number's integer and fraction parts, which accumulate into one mantissa.
#[inline]
fn accumulate_digits(bytes: &[u8], mut i: usize, mantissa: &mut u64, digits: &mut u32) -> usize {
    // Eight bytes at a time while eight remain (SWAR): the digits before the first non-digit
    // byte are combined in a few multiplications. `mantissa * 10^n + value` taken modulo 2^64
    // is exactly what n steps of the byte loop below compute with wrapping arithmetic.
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let n = leading_digits(word);
        if n == 0 {
            return i;
        }
        let value = eight_digits(word, n);
        *mantissa = mantissa.wrapping_mul(POW10_U64[n]).wrapping_add(value);
        *digits += n as u32;
        i += n;
        if n < 8 {
            return i;
        }
    }
    while let Some(&b) = bytes.get(i) {
        if !b.is_ascii_digit() {
            break;
        }
        *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
        *digits += 1;
        i += 1;
    }
    i
}

/// 10^n for n in 0..=8.
const POW10_U64: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// How many of the eight bytes of `word` (little-endian: byte 0 first) are ASCII digits
/// before the first one that is not (8 when all are). A byte is flagged when `b - 0x30`
/// borrows or lands at or above 0x80 (b < '0' or b >= 0xB0), or `b + 0x46` reaches 0x80
/// (b > '9'); digit bytes neither borrow nor carry, so the lowest flagged byte is exact.
#[inline]
fn leading_digits(word: u64) -> usize {
    let flags = (word.wrapping_sub(0x3030_3030_3030_3030)
        | word.wrapping_add(0x4646_4646_4646_4646))
        & 0x8080_8080_8080_8080;
    (flags.trailing_zeros() / 8) as usize
}

/// The value of the first `n` (1..=8) digit bytes of `word`: the later bytes are shifted
/// out and leading zero digits shifted in, then the standard three-multiplication combine.
#[inline]
fn eight_digits(word: u64, n: usize) -> u64 {
    let mut v = word.wrapping_sub(0x3030_3030_3030_3030) << (8 * (8 - n));
    v = v.wrapping_mul(10).wrapping_add(v >> 8);
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    (v & MASK)
        .wrapping_mul(MUL1)
        .wrapping_add(((v >> 16) & MASK).wrapping_mul(MUL2))
        >> 32
}

#[cfg(test)]
mod test {
    use super::*;

    fn number(text: &str) -> Result<f64> {
        let mut cursor = Cursor::new(text.as_bytes(), 0);
        let value = cursor.number()?;
        cursor.finish()?;
        Ok(value)
    }

    /// The byte loop alone: the reference the eight-byte path must equal.
    fn accumulate_bytewise(
        bytes: &[u8],
        mut i: usize,
        mantissa: &mut u64,
        digits: &mut u32,
    ) -> usize {
        while let Some(&b) = bytes.get(i) {
            if !b.is_ascii_digit() {
                break;
            }
            *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
            *digits += 1;
            i += 1;
        }
        i
    }

    #[test]
    fn eight_byte_digits_equal_the_byte_loop() {
        // Every byte value after every run length, and long runs that wrap the mantissa.
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for run in 0..=20 {
            for stop in 0..=255u8 {
                let mut text: Vec<u8> = (0..run).map(|k| b'0' + ((k * 7 + 3) % 10) as u8).collect();
                text.push(stop);
                text.extend_from_slice(b"9876543210");
                cases.push(text);
            }
        }
        for text in &cases {
            for start in 0..=text.len().min(3) {
                assert_digits_agree(text, start);
            }
        }
    }

    fn assert_digits_agree(text: &[u8], start: usize) {
        let (mut m1, mut d1, mut m2, mut d2) = (0u64, 0u32, 0u64, 0u32);
        let i1 = accumulate_digits(text, start, &mut m1, &mut d1);
        let i2 = accumulate_bytewise(text, start, &mut m2, &mut d2);
        assert_eq!((i1, m1, d1), (i2, m2, d2), "{text:?} from {start}");
    }

    proptest::proptest! {
        /// Texts mostly of digits, with any byte now and then.
        #[test]
        fn eight_byte_digits_equal_the_byte_loop_on_random_texts(
            text in proptest::collection::vec(
                proptest::prop_oneof![4 => b'0'..=b'9', 1 => proptest::num::u8::ANY],
                0..40,
            ),
            start in 0usize..4,
        ) {
            assert_digits_agree(&text, start.min(text.len()));
        }
    }

    #[test]
    fn numbers_parse_exactly_like_std() {
        for text in [
            "0",
            "-0",
            "1",
            "-73.9857",
            "31.286112861128629",
            "1e5",
            "1E-7",
            "-2.5e+3",
            "123456789012345678901234567890",
            "0.1",
            "179.99999999999997",
            "5e-324",
            "1e400",
        ] {
            let expected: f64 = text.parse().expect("std parses");
            assert_eq!(
                number(text).expect(text).to_bits(),
                expected.to_bits(),
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_numbers_are_rejected() {
        for text in ["01", "-", "1.", ".5", "1e", "+1", "1.e3"] {
            assert!(number(text).is_err(), "{text} accepted");
        }
    }

    #[test]
    fn skip_value_reports_type_and_validates() {
        let cases = [
            (
                "{\"a\": [1, {\"b\": null}], \"c\": \"x\"}",
                JsonType::Object,
            ),
            ("[]", JsonType::Array),
            ("\"s\\u00e9\"", JsonType::String),
            ("\"\\ud83d\\ude00\"", JsonType::String),
            ("true", JsonType::Boolean),
            ("null", JsonType::Null),
            ("-1.5e3", JsonType::Number),
        ];
        for (text, expected) in cases {
            let mut cursor = Cursor::new(text.as_bytes(), 0);
            assert_eq!(cursor.skip_value().expect(text), expected);
            cursor.finish().expect(text);
        }
        for bad in [
            "{\"a\" 1}",
            "[1,]",
            "{\"a\":1,}",
            "[1 2]",
            "tru",
            "\"\\x\"",
            "{1:2}",
            "\"\\ud83d\"",
            "\"\\ud83d\\u0041\"",
            "\"\\ude00\"",
        ] {
            let mut cursor = Cursor::new(bad.as_bytes(), 0);
            assert!(
                cursor.skip_value().and_then(|_| cursor.finish()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn truncation_is_its_own_kind_with_offset() {
        let mut cursor = Cursor::new(b"[1, [2, \"ab", 100);
        let err = cursor.skip_value().expect_err("truncated");
        assert_eq!(err.kind, ErrorKind::Truncated);
        assert_eq!(err.offset, Some(111));
    }

    #[test]
    fn strings_decode_escapes_and_surrogates() {
        let mut cursor = Cursor::new(br#""a\"b\\n\u00e9\ud83d\ude00""#, 0);
        assert_eq!(cursor.string().expect("valid"), "a\"b\\n\u{e9}\u{1f600}");
    }
}
