//! The byte-level JSON parser against serde_json, on generated and corrupted inputs: the
//! same accept/reject decision, the same JSON type for every property value, and the same
//! numbers.
//!
//! Values are generated as text (random whitespace, escapes, surrogate pairs, exponents),
//! placed as the last property of a feature so that no corruption of the value can turn the
//! surrounding document into different valid GeoJSON, and both parsers read the whole
//! document. Numbers are compared with the standard library's correctly rounded parse (the
//! engine's must be identical) and with serde_json's, which is documented as best-effort
//! without its `float_roundtrip` feature (a few units in the last place off at worst).

use geobatch_analysis::{AnalysisOptions, ErrorKind, analyze_reader};
use proptest::prelude::*;
use serde_json::Value;

fn whitespace() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec![" ", "\n", "\t", "\r", ""]), 0..3)
        .prop_map(|parts| parts.concat())
}

/// JSON number texts over the whole grammar, finite in f64 (see
/// `numbers_beyond_f64_are_infinite_not_errors` for the rest).
fn number_text() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop_oneof![Just("0".to_owned()), "[1-9][0-9]{0,22}"],
        prop::option::of("[0-9]{1,22}"),
        prop::option::of(("[eE]", "[+-]?", 0u32..280)),
    )
        .prop_map(|(negative, int, frac, exp)| {
            let mut text = String::new();
            if negative {
                text.push('-');
            }
            text.push_str(&int);
            if let Some(frac) = frac {
                text.push('.');
                text.push_str(&frac);
            }
            if let Some((e, sign, digits)) = exp {
                text.push_str(&format!("{e}{sign}{digits:03}"));
            }
            text
        })
}

/// JSON string texts: plain and non-ASCII characters, every escape, surrogate pairs and
/// (invalid) lone surrogates.
fn string_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9 ]{1,4}",
        "[\u{a0}-\u{3000}]",
        "[\u{1F300}-\u{1F64F}]",
        prop::sample::select(vec![
            "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"
        ])
        .prop_map(str::to_owned),
        (0u32..0xD800).prop_map(|c| format!("\\u{c:04x}")),
        (0xE000u32..0x1_0000).prop_map(|c| format!("\\u{c:04X}")),
        (0xD800u32..0xDC00, 0xDC00u32..0xE000).prop_map(|(h, l)| format!("\\u{h:04x}\\u{l:04x}")),
        (0xD800u32..0xE000).prop_map(|c| format!("\\u{c:04x}")),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|pieces| format!("\"{}\"", pieces.concat()))
}

fn value_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        number_text(),
        string_text(),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        let member = (whitespace(), string_text(), whitespace(), inner.clone());
        prop_oneof![
            (
                prop::collection::vec((whitespace(), inner), 0..6),
                whitespace()
            )
                .prop_map(|(items, ws)| {
                    let items: Vec<String> = items.into_iter().map(|(w, v)| w + &v).collect();
                    format!("[{}{ws}]", items.join(","))
                }),
            (prop::collection::vec(member, 0..6), whitespace()).prop_map(|(members, ws)| {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(w1, k, w2, v)| format!("{w1}{k}{w2}:{v}"))
                    .collect();
                format!("{{{}{ws}}}", members.join(","))
            }),
        ]
    })
}

/// A single-byte corruption: delete, insert or replace a byte, or cut the text short.
#[derive(Debug, Clone)]
enum Corruption {
    Delete(usize),
    Insert(usize, u8),
    Replace(usize, u8),
    Truncate(usize),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    let byte = prop_oneof![
        prop::sample::select(b"{}[]:,\"\\ 0123456789.eE+-tfnulx/".to_vec()),
        0u8..0x20,
        0x80u8..=0xff,
    ];
    prop_oneof![
        any::<usize>().prop_map(Corruption::Delete),
        (any::<usize>(), byte.clone()).prop_map(|(at, b)| Corruption::Insert(at, b)),
        (any::<usize>(), byte).prop_map(|(at, b)| Corruption::Replace(at, b)),
        any::<usize>().prop_map(Corruption::Truncate),
    ]
}

fn corrupt(text: &str, how: &Corruption) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    if bytes.is_empty() {
        return bytes;
    }
    match *how {
        Corruption::Delete(at) => {
            bytes.remove(at % bytes.len());
        }
        Corruption::Insert(at, byte) => bytes.insert(at % (bytes.len() + 1), byte),
        Corruption::Replace(at, byte) => {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        Corruption::Truncate(at) => bytes.truncate(at % bytes.len()),
    }
    bytes
}

/// A FeatureCollection whose one feature ends with the property `"v": value`.
fn document(value: &[u8]) -> Vec<u8> {
    let mut doc = br#"{"type":"FeatureCollection","features":[{"type":"Feature","geometry":null,"properties":{"v":"#.to_vec();
    doc.extend_from_slice(value);
    doc.extend_from_slice(b"}}]}");
    doc
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Both parsers on one document: same decision, and the same type for `v`.
fn compare(doc: &[u8]) -> Result<(), TestCaseError> {
    let ours = analyze_reader(doc, &AnalysisOptions::default());
    let theirs = serde_json::from_slice::<Value>(doc);
    let text = String::from_utf8_lossy(doc);
    // Beyond f64's range is the one deliberate difference (see the last test).
    prop_assume!(
        !theirs
            .as_ref()
            .is_err_and(|err| err.to_string().starts_with("number out of range"))
    );
    match (&ours, &theirs) {
        (Ok(report), Ok(value)) => {
            let v = &value["features"][0]["properties"]["v"];
            let stats = report.properties.get("v");
            prop_assert!(stats.is_some(), "no property v in {text}");
            let types: Vec<&String> = stats.map(|s| s.types.keys().collect()).unwrap_or_default();
            prop_assert_eq!(types, vec![json_type(v)], "{}", text);
        }
        (Err(_), Err(_)) => {}
        _ => prop_assert!(
            false,
            "engine {:?} but serde_json {:?} on {}",
            ours.as_ref().map(|_| "accepts").map_err(|e| e.to_string()),
            theirs
                .as_ref()
                .map(|_| "accepts")
                .map_err(|e| e.to_string()),
            text
        ),
    }
    Ok(())
}

/// serde_json's number is within 1e-15 relative of `expected` (its default parsing is
/// best-effort: a 19-digit mantissa with a large exponent can be 2-3 ulps off).
fn close_to(serde: f64, expected: f64) -> bool {
    serde == expected || (serde - expected).abs() <= 1e-15 * expected.abs()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn generated_values_parse_like_serde_json(value in value_text()) {
        compare(&document(value.as_bytes()))?;
    }

    #[test]
    fn corrupted_values_are_rejected_like_serde_json(value in value_text(), how in corruption()) {
        compare(&document(&corrupt(&value, &how)))?;
    }

    #[test]
    fn numbers_are_the_correctly_rounded_ones(x in number_text(), y in number_text()) {
        let doc = format!(r#"{{"type":"Point","coordinates":[{x},{y}]}}"#);
        let report = analyze_reader(doc.as_bytes(), &AnalysisOptions::default())
            .map_err(|err| TestCaseError::fail(format!("{doc}: {err}")))?;
        let (ex, ey): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
        prop_assert_eq!(report.bbox.map(|b| b.map(f64::to_bits)), Some([ex, ey, ex, ey].map(f64::to_bits)), "{}", doc);
        let theirs: Value = serde_json::from_str(&doc).unwrap();
        let sx = theirs["coordinates"][0].as_f64().unwrap();
        let sy = theirs["coordinates"][1].as_f64().unwrap();
        prop_assert!(close_to(sx, ex) && close_to(sy, ey), "{doc}: serde_json {sx} {sy}");
    }

    #[test]
    fn corrupted_numbers_are_rejected_like_serde_json(x in number_text(), how in corruption()) {
        let corrupted = corrupt(&x, &how);
        // Beyond f64's range is the one deliberate difference (see the test below).
        let overflows = std::str::from_utf8(&corrupted)
            .ok()
            .and_then(|text| text.parse::<f64>().ok())
            .is_some_and(f64::is_infinite);
        prop_assume!(!overflows);
        let mut doc = br#"{"type":"Point","coordinates":[0,"#.to_vec();
        doc.extend_from_slice(&corrupted);
        doc.extend_from_slice(b"]}");
        let ours = analyze_reader(doc.as_slice(), &AnalysisOptions::default());
        let theirs = serde_json::from_slice::<Value>(&doc);
        // A corruption can leave valid JSON that is not a position of numbers (`[0,"x"]`),
        // which the engine rejects as coordinates, not as JSON: only JSON errors count here.
        let ours_json_ok = !matches!(
            ours.as_ref().map_err(|e| e.kind),
            Err(ErrorKind::InvalidJson | ErrorKind::Truncated)
        );
        prop_assert_eq!(ours_json_ok, theirs.is_ok(), "{}: {:?}", String::from_utf8_lossy(&doc), ours.err());
    }
}

/// The one deliberate difference: serde_json refuses numbers beyond f64's range; the engine
/// reads them as ±infinity (and does not evaluate property values at all), so a coordinate
/// out of range makes its geometry invalid rather than failing the whole file.
#[test]
fn numbers_beyond_f64_are_infinite_not_errors() {
    let doc = br#"{"type":"Point","coordinates":[1e400,-1e400]}"#;
    assert!(serde_json::from_slice::<Value>(doc).is_err());
    let report = analyze_reader(&doc[..], &AnalysisOptions::default()).expect("accepted");
    assert_eq!(
        report.bbox,
        Some([
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY
        ])
    );
    assert_eq!(report.invalid_geometries, 1);
}
