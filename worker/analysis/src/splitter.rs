//! Splits a GeoJSON stream into features without parsing them.
//!
//! One thread reads the input through a fixed buffer and walks only its outer structure: the
//! top-level object's members, and in `features` the extent of each element (strings and
//! bracket depth, nothing more). Each feature's bytes are copied into a [`Batch`] that a
//! worker thread parses in full. Memory is the read buffer plus the batches in flight, each
//! feature bounded by `max_feature_bytes`; depth is counted, never recursed, and bounded by
//! `max_nesting_depth`.

use std::io::{ErrorKind as IoErrorKind, Read};
use std::ops::Range;

use super::error::{AnalysisError, ErrorKind};
use super::feature::Shape;
use super::json::Cursor;

type Result<T> = std::result::Result<T, AnalysisError>;

/// A batch closes once its features hold this many bytes (or [`BATCH_FEATURES`] features).
/// Batching depends only on the input, never on timing or thread count, so reports are
/// deterministic.
const BATCH_BYTES: usize = 1 << 20;
const BATCH_FEATURES: usize = 4096;
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Consecutive features for one worker thread.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Position of this batch in the input, from 0.
    pub(crate) seq: u64,
    /// Index in the input of the batch's first feature.
    pub(crate) first_feature: u64,
    /// The features' bytes, back to back.
    pub(crate) data: Vec<u8>,
    /// Each feature's range in `data` and offset of its first byte in the input.
    pub(crate) items: Vec<(Range<usize>, u64)>,
    /// Whether the items are features or bare geometries.
    pub(crate) shape: Option<Shape>,
}

impl Batch {
    fn is_full(&self) -> bool {
        self.data.len() >= BATCH_BYTES || self.items.len() >= BATCH_FEATURES
    }
}

/// Limits the splitter enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_feature_bytes: u64,
    pub(crate) max_nesting_depth: usize,
}

/// The input's outer structure, read incrementally.
pub(crate) struct Splitter<R> {
    reader: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Input offset of `buf[0]`.
    buf_offset: u64,
    eof: bool,
    /// While the top-level object might still turn out to be a single Feature or geometry,
    /// every byte consumed is copied here (up to `max_feature_bytes`).
    tee: Option<Vec<u8>>,
    tee_overflowed: bool,
    limits: Limits,
    next_seq: u64,
    next_feature: u64,
}

impl<R: Read> Splitter<R> {
    pub(crate) fn new(reader: R, limits: Limits) -> Self {
        Splitter {
            reader,
            buf: vec![0; READ_BUFFER_BYTES].into_boxed_slice(),
            pos: 0,
            end: 0,
            buf_offset: 0,
            eof: false,
            tee: None,
            tee_overflowed: false,
            limits,
            next_seq: 0,
            next_feature: 0,
        }
    }

    /// Bytes consumed so far.
    pub(crate) fn offset(&self) -> u64 {
        self.buf_offset + self.pos as u64
    }

    /// Reads the whole input, handing each full batch to `dispatch`. Returns the number of
    /// features found.
    pub(crate) fn run(&mut self, dispatch: &mut dyn FnMut(Batch) -> Result<()>) -> Result<u64> {
        if self.peek()? == Some(0xEF) {
            // A UTF-8 byte-order mark, which may straddle reads like any other bytes.
            for expected in [0xEF, 0xBB, 0xBF] {
                if self.peek()? != Some(expected) {
                    return Err(AnalysisError::at(
                        ErrorKind::InvalidJson,
                        self.offset(),
                        "the input starts with an incomplete byte-order mark",
                    ));
                }
                self.bump();
            }
        }
        self.skip_ws()?;
        let start = self.offset();
        match self.peek()? {
            None => {
                return Err(AnalysisError::at(
                    ErrorKind::EmptyInput,
                    start,
                    "the input holds no JSON value",
                ));
            }
            Some(b'{') => {}
            Some(b'[') => {
                return Err(AnalysisError::at(
                    ErrorKind::NotGeojson,
                    start,
                    "the input is a JSON array; GeoJSON is an object (FeatureCollection, Feature or geometry)",
                ));
            }
            Some(b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
                return Err(AnalysisError::at(
                    ErrorKind::NotGeojson,
                    start,
                    "the input is a JSON scalar; GeoJSON is an object",
                ));
            }
            Some(byte) => {
                return Err(AnalysisError::at(
                    ErrorKind::InvalidJson,
                    start,
                    format!("the input does not start with a JSON value (found byte 0x{byte:02x})"),
                ));
            }
        }
        self.tee = Some(Vec::new());
        self.bump();
        let mut type_name: Option<String> = None;
        let mut saw_features = false;
        let mut batch = self.new_batch(Shape::Feature);
        let mut scratch = Vec::new();
        self.skip_ws()?;
        if self.peek()? == Some(b'}') {
            self.bump();
        } else {
            loop {
                self.skip_ws()?;
                let key_offset = self.offset();
                if self.peek()? != Some(b'"') {
                    return Err(self.unexpected("a member name")?);
                }
                scratch.clear();
                self.capture_value(&mut scratch, 1, "a member name")?;
                let key = Cursor::new(&scratch, key_offset).string()?.into_owned();
                self.skip_ws()?;
                if self.peek()? != Some(b':') {
                    return Err(self.unexpected("':'")?);
                }
                self.bump();
                self.skip_ws()?;
                match key.as_str() {
                    "features" => {
                        if saw_features {
                            return Err(AnalysisError::at(
                                ErrorKind::NotGeojson,
                                key_offset,
                                "a second \"features\" member",
                            ));
                        }
                        if let Some(other) =
                            type_name.as_deref().filter(|t| *t != "FeatureCollection")
                        {
                            return Err(AnalysisError::at(
                                ErrorKind::NotGeojson,
                                key_offset,
                                format!("a \"features\" member in a {other}"),
                            ));
                        }
                        saw_features = true;
                        self.tee = None;
                        self.features(&mut batch, dispatch)?;
                    }
                    "type" => {
                        let value_offset = self.offset();
                        scratch.clear();
                        self.capture_value(&mut scratch, 1, "\"type\"")?;
                        let mut cursor = Cursor::new(&scratch, value_offset);
                        if cursor.peek() != Some(b'"') {
                            cursor.skip_value()?;
                            return Err(AnalysisError::at(
                                ErrorKind::NotGeojson,
                                value_offset,
                                "\"type\" must be a string",
                            ));
                        }
                        let name = cursor.string()?.into_owned();
                        if !is_known_type(&name) {
                            return Err(AnalysisError::at(
                                ErrorKind::NotGeojson,
                                value_offset,
                                format!("unknown GeoJSON type {name:?}"),
                            ));
                        }
                        if saw_features && name != "FeatureCollection" {
                            return Err(AnalysisError::at(
                                ErrorKind::NotGeojson,
                                value_offset,
                                format!("a \"features\" member in a {name}"),
                            ));
                        }
                        if name == "FeatureCollection" {
                            self.tee = None;
                        }
                        type_name = Some(name);
                    }
                    _ => {
                        let value_offset = self.offset();
                        scratch.clear();
                        self.capture_value(&mut scratch, 1, &format!("member {key:?}"))?;
                        let mut cursor = Cursor::new(&scratch, value_offset);
                        cursor.skip_value()?;
                        cursor.finish()?;
                    }
                }
                self.skip_ws()?;
                match self.peek()? {
                    Some(b',') => self.bump(),
                    Some(b'}') => {
                        self.bump();
                        break;
                    }
                    _ => return Err(self.unexpected("',' or '}' after a top-level member")?),
                }
            }
        }
        let top_bytes = self.tee.take();
        self.skip_ws()?;
        if self.peek()?.is_some() {
            return Err(AnalysisError::at(
                ErrorKind::InvalidJson,
                self.offset(),
                "trailing data after the top-level GeoJSON object",
            ));
        }
        match type_name.as_deref() {
            Some("FeatureCollection") if saw_features => {
                if !batch.items.is_empty() {
                    dispatch(batch)?;
                }
                Ok(self.next_feature)
            }
            Some("FeatureCollection") => Err(AnalysisError::at(
                ErrorKind::NotGeojson,
                start,
                "FeatureCollection without a \"features\" member",
            )),
            Some("Topology") => Err(AnalysisError::at(
                ErrorKind::NotGeojson,
                start,
                "this is TopoJSON (type \"Topology\"), not GeoJSON; convert it first (for example with topojson-client's topo2geo, or ogr2ogr)",
            )),
            Some(name) => {
                let shape = if name == "Feature" {
                    Shape::Feature
                } else if super::geometry::GeometryType::from_name(name).is_some() {
                    Shape::Geometry
                } else {
                    return Err(AnalysisError::at(
                        ErrorKind::NotGeojson,
                        start,
                        format!("unknown GeoJSON type {name:?}"),
                    ));
                };
                if self.tee_overflowed {
                    return Err(self.too_large(start, "the top-level object"));
                }
                let data = top_bytes.unwrap_or_default();
                batch.shape = Some(shape);
                batch.items.push((0..data.len(), start));
                batch.data = data;
                self.next_feature = 1;
                dispatch(batch)?;
                Ok(1)
            }
            None => Err(AnalysisError::at(
                ErrorKind::NotGeojson,
                start,
                "the top-level object has no \"type\" member, so it is not GeoJSON",
            )),
        }
    }

    fn new_batch(&mut self, shape: Shape) -> Batch {
        let batch = Batch {
            seq: self.next_seq,
            first_feature: self.next_feature,
            data: Vec::new(),
            items: Vec::new(),
            shape: Some(shape),
        };
        self.next_seq += 1;
        batch
    }

    /// Streams the elements of the `features` array into batches.
    fn features(
        &mut self,
        batch: &mut Batch,
        dispatch: &mut dyn FnMut(Batch) -> Result<()>,
    ) -> Result<()> {
        if self.peek()? != Some(b'[') {
            return Err(AnalysisError::at(
                ErrorKind::NotGeojson,
                self.offset(),
                "\"features\" must be an array",
            ));
        }
        self.check_depth(2)?;
        self.bump();
        self.skip_ws()?;
        if self.peek()? == Some(b']') {
            self.bump();
            return Ok(());
        }
        loop {
            self.skip_ws()?;
            let offset = self.offset();
            match self.peek()? {
                Some(b'{') => {
                    let start = batch.data.len();
                    self.capture_value(&mut batch.data, 2, "a feature")?;
                    batch.items.push((start..batch.data.len(), offset));
                    self.next_feature += 1;
                    if batch.is_full() {
                        let next = self.new_batch(Shape::Feature);
                        dispatch(std::mem::replace(batch, next))?;
                    }
                }
                Some(b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n' | b'[') => {
                    return Err(AnalysisError::at(
                        ErrorKind::NotGeojson,
                        offset,
                        format!(
                            "element {} of \"features\" is not an object",
                            self.next_feature
                        ),
                    ));
                }
                _ => return Err(self.unexpected("a feature object")?),
            }
            self.skip_ws()?;
            match self.peek()? {
                Some(b',') => self.bump(),
                Some(b']') => {
                    self.bump();
                    return Ok(());
                }
                _ => return Err(self.unexpected("',' or ']' in \"features\"")?),
            }
        }
    }

    fn too_large(&self, offset: u64, what: &str) -> AnalysisError {
        AnalysisError::at(
            ErrorKind::FeatureTooLarge,
            offset,
            format!(
                "{what} is larger than the limit of {} bytes (--max-feature-bytes)",
                self.limits.max_feature_bytes
            ),
        )
    }

    fn check_depth(&self, depth: usize) -> Result<()> {
        if depth > self.limits.max_nesting_depth {
            Err(self.depth_error())
        } else {
            Ok(())
        }
    }

    fn depth_error(&self) -> AnalysisError {
        AnalysisError::at(
            ErrorKind::TooDeep,
            self.offset(),
            format!(
                "JSON nesting deeper than the limit of {} (--max-depth)",
                self.limits.max_nesting_depth
            ),
        )
    }

    /// Copies one JSON value, starting at the current (non-space) byte, into `out`. Checks
    /// only structure: the worker's parser validates the rest. `parent_depth` is the depth
    /// of the container holding the value.
    fn capture_value(&mut self, out: &mut Vec<u8>, parent_depth: usize, what: &str) -> Result<()> {
        let start_offset = self.offset();
        let start_len = out.len();
        let limit = usize::try_from(self.limits.max_feature_bytes).unwrap_or(usize::MAX);
        let max_depth = self.limits.max_nesting_depth.saturating_sub(parent_depth);
        let mut depth = 0usize;
        let mut in_string = false;
        // The previous byte was a backslash inside a string (possibly in the previous chunk).
        let mut escaped = false;
        loop {
            if self.pos == self.end && !self.fill()? {
                return Err(AnalysisError::at(
                    ErrorKind::Truncated,
                    self.offset(),
                    format!("the input ends inside {what} that starts at byte {start_offset}"),
                ));
            }
            let chunk = &self.buf[self.pos..self.end];
            let captured_before = out.len() > start_len;
            let mut i = 0;
            let mut done = false;
            let mut too_deep = false;
            while i < chunk.len() {
                if escaped {
                    escaped = false;
                    i += 1;
                    continue;
                }
                if in_string {
                    let Some(skip) = chunk[i..].iter().position(|&b| STRING_STOP[usize::from(b)])
                    else {
                        i = chunk.len();
                        break;
                    };
                    i += skip;
                    if chunk[i] == b'\\' {
                        escaped = true;
                        i += 1;
                        continue;
                    }
                    in_string = false;
                    i += 1;
                    if depth == 0 {
                        done = true;
                        break;
                    }
                    continue;
                }
                if depth > 0 {
                    let Some(skip) = find_structure(&chunk[i..]) else {
                        i = chunk.len();
                        break;
                    };
                    i += skip;
                }
                match chunk[i] {
                    b'"' => in_string = true,
                    b'{' | b'[' => {
                        if depth == max_depth {
                            too_deep = true;
                            break;
                        }
                        depth += 1;
                    }
                    b'}' | b']' if depth == 0 => {
                        done = true;
                        break;
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            done = true;
                            break;
                        }
                    }
                    b',' | b' ' | b'\n' | b'\r' | b'\t' | b':' => {
                        // Only reached at depth 0: the end of a number or literal.
                        done = true;
                        break;
                    }
                    _ => {}
                }
                i += 1;
            }
            let consumed = self.pos + i;
            out.extend_from_slice(&self.buf[self.pos..consumed]);
            self.consume_to(consumed);
            if too_deep {
                return Err(self.depth_error());
            }
            if out.len() - start_len > limit {
                return Err(self.too_large(start_offset, what));
            }
            if done {
                if out.len() == start_len && !captured_before {
                    return Err(self.unexpected(&format!("{what} (a JSON value)"))?);
                }
                return Ok(());
            }
        }
    }

    /// Refills the buffer if it is used up; `false` at the end of the input.
    fn fill(&mut self) -> Result<bool> {
        if self.pos < self.end {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        self.buf_offset += self.end as u64;
        self.pos = 0;
        self.end = 0;
        loop {
            match self.reader.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end = n;
                    return Ok(true);
                }
                Err(err) if err.kind() == IoErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(AnalysisError::at(
                        ErrorKind::Io,
                        self.buf_offset,
                        format!("reading the input failed: {err}"),
                    ));
                }
            }
        }
    }

    fn peek(&mut self) -> Result<Option<u8>> {
        Ok(if self.fill()? {
            Some(self.buf[self.pos])
        } else {
            None
        })
    }

    /// Consumes the byte that [`Self::peek`] returned.
    fn bump(&mut self) {
        self.consume_to(self.pos + 1);
    }

    fn consume_to(&mut self, to: usize) {
        if let Some(tee) = self.tee.as_mut() {
            let limit = usize::try_from(self.limits.max_feature_bytes).unwrap_or(usize::MAX);
            if tee.len() + (to - self.pos) <= limit {
                tee.extend_from_slice(&self.buf[self.pos..to]);
            } else {
                self.tee_overflowed = true;
            }
        }
        self.pos = to;
    }

    fn skip_ws(&mut self) -> Result<()> {
        while self.fill()? {
            let start = self.pos;
            let mut i = start;
            while i < self.end && matches!(self.buf[i], b' ' | b'\n' | b'\r' | b'\t') {
                i += 1;
            }
            self.consume_to(i);
            if i < self.end {
                break;
            }
        }
        Ok(())
    }

    fn unexpected(&mut self, expected: &str) -> Result<AnalysisError> {
        let offset = self.offset();
        Ok(match self.peek()? {
            None => AnalysisError::at(
                ErrorKind::Truncated,
                offset,
                format!("the input ends where {expected} was expected"),
            ),
            Some(byte) => AnalysisError::at(
                ErrorKind::InvalidJson,
                offset,
                format!("expected {expected}, found byte 0x{byte:02x}"),
            ),
        })
    }
}

/// Types that may head a GeoJSON document, and TopoJSON's, which gets its own message.
fn is_known_type(name: &str) -> bool {
    matches!(name, "FeatureCollection" | "Feature" | "Topology")
        || super::geometry::GeometryType::from_name(name).is_some()
}

/// Bytes that end a run inside a string.
static STRING_STOP: [bool; 256] = byte_set(b"\"\\");
/// Bytes that matter inside a container outside strings.
static STRUCTURE: [bool; 256] = byte_set(b"\"{}[]");

/// The index of the first byte of `bytes` in [`STRUCTURE`] (`"`, `{`, `}`, `[`, `]`), eight
/// bytes at a time (SWAR): `b | 0x20` maps exactly `[`/`{` to `{` and `]`/`}` to `}`, and
/// `"` is matched on `b` itself. Each zero-byte test flags its lowest true match exactly (a
/// false flag sits only above a true one, through the borrow), so the lowest flag of their
/// union is the first match.
#[inline]
fn find_structure(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    #[inline]
    fn zero_bytes(v: u64) -> u64 {
        v.wrapping_sub(ONES) & !v & HIGH
    }
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let folded = word | 0x2020_2020_2020_2020;
        let flags = zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(folded ^ (ONES * u64::from(b'{')))
            | zero_bytes(folded ^ (ONES * u64::from(b'}')));
        if flags != 0 {
            return Some(i + (flags.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    bytes[i..]
        .iter()
        .position(|&b| STRUCTURE[usize::from(b)])
        .map(|k| i + k)
}

const fn byte_set(bytes: &[u8]) -> [bool; 256] {
    let mut set = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        set[bytes[i] as usize] = true;
        i += 1;
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_structure_equals_the_byte_table() {
        // Every byte value at every position of a window.
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for len in 0..20 {
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut text = vec![b'7'; len];
                    text[pos] = b;
                    cases.push(text);
                }
            }
        }
        for text in &cases {
            assert_structure_agrees(text);
        }
    }

    fn assert_structure_agrees(text: &[u8]) {
        let expected = text.iter().position(|&b| STRUCTURE[usize::from(b)]);
        assert_eq!(find_structure(text), expected, "{text:?}");
    }

    proptest::proptest! {
        /// Texts mostly of digits, with any byte now and then.
        #[test]
        fn find_structure_equals_the_byte_table_on_random_texts(
            text in proptest::collection::vec(
                proptest::prop_oneof![2 => b'0'..=b'9', 1 => proptest::num::u8::ANY],
                0..48,
            ),
        ) {
            assert_structure_agrees(&text);
        }
    }
}
