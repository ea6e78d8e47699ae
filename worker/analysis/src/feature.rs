//! Parses one feature (or a bare geometry) from its bytes into a [`ParsedFeature`].
//!
//! Members may come in any order: when `coordinates` or `geometries` precede the geometry's
//! `type`, their position is remembered, the value skipped, and parsed once the type is
//! known. Coordinates go straight into flat `f64` arrays.

use std::borrow::Cow;

use super::error::{AnalysisError, ErrorKind};
use super::geometry::{Geometry, GeometryType, Xy};
use super::json::{Cursor, JsonType};

type Result<T> = std::result::Result<T, AnalysisError>;

/// What the bytes handed to [`parse`] hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A `{"type": "Feature", ...}` object.
    Feature,
    /// A bare geometry object, analysed as one feature without properties.
    Geometry,
}

/// The parts of a feature that the analysis looks at.
#[derive(Debug)]
pub(crate) struct ParsedFeature<'a> {
    /// The feature's `id`, when it is a string or a number.
    pub(crate) id: Option<serde_json::Value>,
    /// `None` for a null (or absent) geometry.
    pub(crate) geometry: Option<Geometry>,
    /// Property names with the JSON type of each value, in file order: the first
    /// `max_properties` of them (see [`parse`]).
    pub(crate) properties: Vec<(Cow<'a, str>, JsonType)>,
    /// Properties beyond `max_properties`: validated and counted, not kept.
    pub(crate) untracked_properties: u64,
}

/// Parses one feature or geometry occupying all of `bytes`, which start at input offset
/// `base`, keeping at most `max_properties` property entries, so a feature with millions
/// of distinct names costs the same memory as one with `max_properties` of them (the cap is
/// applied while reading, before anything is copied).
pub(crate) fn parse(
    bytes: &[u8],
    base: u64,
    shape: Shape,
    max_properties: usize,
) -> Result<ParsedFeature<'_>> {
    let mut cursor = Cursor::new(bytes, base);
    let parsed = match shape {
        Shape::Feature => parse_feature(&mut cursor, max_properties)?,
        Shape::Geometry => ParsedFeature {
            id: None,
            geometry: Some(parse_geometry(&mut cursor)?),
            properties: Vec::new(),
            untracked_properties: 0,
        },
    };
    cursor.finish()?;
    Ok(parsed)
}

fn parse_feature<'a>(cursor: &mut Cursor<'a>, max_properties: usize) -> Result<ParsedFeature<'a>> {
    let start = cursor.offset();
    if cursor.peek() != Some(b'{') {
        return Err(cursor.error(ErrorKind::NotGeojson, "a feature must be a JSON object"));
    }
    cursor.expect(b'{', "'{'")?;
    let mut type_name: Option<Cow<'a, str>> = None;
    let mut feature = ParsedFeature {
        id: None,
        geometry: None,
        properties: Vec::new(),
        untracked_properties: 0,
    };
    if !cursor.eat(b'}') {
        loop {
            let key = cursor.string()?;
            cursor.expect(b':', "':'")?;
            match key.as_ref() {
                "type" => type_name = Some(expect_string(cursor, "a feature's \"type\"")?),
                "geometry" => {
                    feature.geometry = if cursor.eat_null()? {
                        None
                    } else {
                        Some(parse_geometry(cursor)?)
                    }
                }
                "properties" => parse_properties(cursor, &mut feature, max_properties)?,
                "id" => feature.id = parse_id(cursor)?,
                _ => {
                    cursor.skip_value()?;
                }
            }
            if !cursor.more(b'}')? {
                break;
            }
        }
    }
    match type_name.as_deref() {
        Some("Feature") => Ok(feature),
        Some(other) => Err(AnalysisError::at(
            ErrorKind::NotGeojson,
            start,
            format!("expected a Feature, found type {other:?}"),
        )),
        None => Err(AnalysisError::at(
            ErrorKind::NotGeojson,
            start,
            "feature without a \"type\" member",
        )),
    }
}

fn expect_string<'a>(cursor: &mut Cursor<'a>, what: &str) -> Result<Cow<'a, str>> {
    if cursor.peek() == Some(b'"') {
        cursor.string()
    } else {
        Err(cursor.error(ErrorKind::NotGeojson, format!("{what} must be a string")))
    }
}

fn parse_properties<'a>(
    cursor: &mut Cursor<'a>,
    feature: &mut ParsedFeature<'a>,
    max_properties: usize,
) -> Result<()> {
    if cursor.eat_null()? {
        return Ok(());
    }
    if cursor.peek() != Some(b'{') {
        return Err(cursor.error(
            ErrorKind::NotGeojson,
            "a feature's \"properties\" must be an object or null",
        ));
    }
    cursor.expect(b'{', "'{'")?;
    if cursor.eat(b'}') {
        return Ok(());
    }
    loop {
        let key = cursor.string()?;
        cursor.expect(b':', "':'")?;
        let value_type = cursor.skip_value()?;
        if feature.properties.len() < max_properties {
            feature.properties.push((key, value_type));
        } else {
            feature.untracked_properties += 1;
        }
        if !cursor.more(b'}')? {
            return Ok(());
        }
    }
}

fn parse_id(cursor: &mut Cursor<'_>) -> Result<Option<serde_json::Value>> {
    match cursor.peek() {
        Some(b'"') => Ok(Some(serde_json::Value::String(
            cursor.string()?.into_owned(),
        ))),
        Some(b'-' | b'0'..=b'9') => {
            cursor.skip_ws();
            let start = cursor.pos();
            let offset = cursor.offset();
            cursor.number()?;
            let text = cursor.slice(start, cursor.pos());
            serde_json::from_slice(text)
                .map(Some)
                .map_err(|_| AnalysisError::at(ErrorKind::InvalidJson, offset, "bad number"))
        }
        _ => {
            // RFC 7946 allows only strings and numbers; anything else is kept out of reports.
            cursor.skip_value()?;
            Ok(None)
        }
    }
}

/// Parses a geometry object. Recursion happens only through GeometryCollection members,
/// whose depth the splitter has bounded by `max_nesting_depth`.
fn parse_geometry(cursor: &mut Cursor<'_>) -> Result<Geometry> {
    let start = cursor.offset();
    if cursor.peek() != Some(b'{') {
        return Err(cursor.error(
            ErrorKind::NotGeojson,
            "a geometry must be a JSON object or null",
        ));
    }
    cursor.expect(b'{', "'{'")?;
    let mut kind: Option<GeometryType> = None;
    let mut parsed: Option<Geometry> = None;
    // Where `coordinates` and `geometries` start when they came before `type`.
    let mut deferred_coordinates: Option<usize> = None;
    let mut deferred_geometries: Option<usize> = None;
    if !cursor.eat(b'}') {
        loop {
            let key = cursor.string()?;
            cursor.expect(b':', "':'")?;
            match key.as_ref() {
                "type" => {
                    let name = expect_string(cursor, "a geometry's \"type\"")?;
                    let found = GeometryType::from_name(&name).ok_or_else(|| {
                        AnalysisError::at(
                            ErrorKind::NotGeojson,
                            start,
                            format!("unknown geometry type {name:?}"),
                        )
                    })?;
                    kind = Some(found);
                }
                "coordinates" | "geometries" => {
                    let is_geometries = key == "geometries";
                    match kind {
                        Some(k) if is_geometries == (k == GeometryType::GeometryCollection) => {
                            parsed = Some(parse_body(cursor, k)?);
                        }
                        Some(_) => {
                            cursor.skip_value()?;
                        }
                        None => {
                            cursor.skip_ws();
                            let slot = if is_geometries {
                                &mut deferred_geometries
                            } else {
                                &mut deferred_coordinates
                            };
                            *slot = Some(cursor.pos());
                            cursor.skip_value()?;
                        }
                    }
                }
                _ => {
                    cursor.skip_value()?;
                }
            }
            if !cursor.more(b'}')? {
                break;
            }
        }
    }
    let Some(kind) = kind else {
        return Err(AnalysisError::at(
            ErrorKind::NotGeojson,
            start,
            "geometry without a \"type\" member",
        ));
    };
    if let Some(geometry) = parsed.filter(|g| g.kind == kind) {
        return Ok(geometry);
    }
    let (member, deferred) = if kind == GeometryType::GeometryCollection {
        ("geometries", deferred_geometries)
    } else {
        ("coordinates", deferred_coordinates)
    };
    match deferred {
        Some(pos) => parse_body(&mut cursor.at(pos), kind),
        None => Err(AnalysisError::at(
            ErrorKind::NotGeojson,
            start,
            format!("{} without a \"{member}\" member", kind.name()),
        )),
    }
}

fn parse_body(cursor: &mut Cursor<'_>, kind: GeometryType) -> Result<Geometry> {
    let mut geometry = Geometry::new(kind);
    match kind {
        GeometryType::Point => position(cursor, &mut geometry.points, kind)?,
        GeometryType::MultiPoint => positions(cursor, &mut geometry.points, kind)?,
        GeometryType::LineString => {
            positions(cursor, &mut geometry.points, kind)?;
            geometry.line_ends.push(geometry.points.len());
        }
        GeometryType::MultiLineString | GeometryType::Polygon => {
            lines(cursor, &mut geometry, kind)?;
            if kind == GeometryType::Polygon {
                geometry.part_ends.push(geometry.line_ends.len());
            }
        }
        GeometryType::MultiPolygon => {
            open(cursor, kind, "an array of polygons")?;
            if !cursor.eat(b']') {
                loop {
                    lines(cursor, &mut geometry, kind)?;
                    geometry.part_ends.push(geometry.line_ends.len());
                    if !cursor.more(b']')? {
                        break;
                    }
                }
            }
        }
        GeometryType::GeometryCollection => {
            if cursor.peek() != Some(b'[') {
                return Err(cursor.error(
                    ErrorKind::NotGeojson,
                    "a GeometryCollection's \"geometries\" must be an array",
                ));
            }
            cursor.expect(b'[', "'['")?;
            if !cursor.eat(b']') {
                loop {
                    geometry.members.push(parse_geometry(cursor)?);
                    if !cursor.more(b']')? {
                        break;
                    }
                }
            }
        }
    }
    Ok(geometry)
}

/// Opens an array that the geometry type requires, with a coordinates error if the value is
/// valid JSON of the wrong shape.
fn open(cursor: &mut Cursor<'_>, kind: GeometryType, what: &str) -> Result<()> {
    match cursor.peek() {
        Some(b'[') => cursor.expect(b'[', "'['"),
        Some(b'{' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => Err(cursor.error(
            ErrorKind::InvalidCoordinates,
            format!("{} coordinates: expected {what}", kind.name()),
        )),
        _ => cursor.expect(b'[', what),
    }
}

fn lines(cursor: &mut Cursor<'_>, geometry: &mut Geometry, kind: GeometryType) -> Result<()> {
    let what = if matches!(kind, GeometryType::MultiLineString) {
        "an array of lines"
    } else {
        "an array of rings"
    };
    open(cursor, kind, what)?;
    if cursor.eat(b']') {
        return Ok(());
    }
    loop {
        positions(cursor, &mut geometry.points, kind)?;
        geometry.line_ends.push(geometry.points.len());
        if !cursor.more(b']')? {
            return Ok(());
        }
    }
}

fn positions(cursor: &mut Cursor<'_>, out: &mut Vec<Xy>, kind: GeometryType) -> Result<()> {
    open(cursor, kind, "an array of positions")?;
    if cursor.eat(b']') {
        return Ok(());
    }
    loop {
        position(cursor, out, kind)?;
        if !cursor.more(b']')? {
            return Ok(());
        }
    }
}

#[inline]
fn position(cursor: &mut Cursor<'_>, out: &mut Vec<Xy>, kind: GeometryType) -> Result<()> {
    open(cursor, kind, "a position")?;
    let x = ordinate(cursor, kind)?;
    if !cursor.eat(b',') {
        return Err(match cursor.peek() {
            Some(b']') => cursor.error(
                ErrorKind::InvalidCoordinates,
                "a position needs at least two numbers",
            ),
            _ => cursor.error(ErrorKind::InvalidJson, "expected ',' in a position"),
        });
    }
    let y = ordinate(cursor, kind)?;
    while cursor.more(b']')? {
        ordinate(cursor, kind)?;
    }
    out.push([x, y]);
    Ok(())
}

#[inline]
fn ordinate(cursor: &mut Cursor<'_>, kind: GeometryType) -> Result<f64> {
    match cursor.peek() {
        Some(b'-' | b'0'..=b'9') => cursor.number(),
        Some(b']') => Err(cursor.error(
            ErrorKind::InvalidCoordinates,
            "a position needs at least two numbers",
        )),
        Some(b'[') => Err(cursor.error(
            ErrorKind::InvalidCoordinates,
            format!("{} coordinates are nested too deeply", kind.name()),
        )),
        Some(b'{' | b'"' | b't' | b'f' | b'n') => Err(cursor.error(
            ErrorKind::InvalidCoordinates,
            "a position may hold only numbers",
        )),
        _ => {
            cursor.number()?;
            Err(cursor.error(ErrorKind::InvalidJson, "expected a number"))
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn feature(text: &str) -> Result<ParsedFeature<'_>> {
        parse(text.as_bytes(), 0, Shape::Feature, usize::MAX)
    }

    #[test]
    fn members_in_any_order() {
        let text = r#"{"geometry": {"coordinates": [[[0,0],[1,0],[1,1],[0,0]]], "type": "Polygon"},
                       "properties": {"a": 1, "b": "x"}, "id": 7, "type": "Feature"}"#;
        let parsed = feature(text).expect("valid");
        let geometry = parsed.geometry.expect("geometry");
        assert_eq!(geometry.kind, GeometryType::Polygon);
        assert_eq!(geometry.points.len(), 4);
        assert_eq!(geometry.line_ends, vec![4]);
        assert_eq!(geometry.part_ends, vec![1]);
        assert_eq!(parsed.id, Some(serde_json::json!(7)));
        assert_eq!(parsed.properties.len(), 2);
        assert_eq!(parsed.properties[1].1, JsonType::String);
    }

    #[test]
    fn geometries_before_type_in_a_collection() {
        let text = r#"{"geometries": [{"type": "Point", "coordinates": [1, 2, 3, 4]}],
                       "type": "GeometryCollection"}"#;
        let parsed = parse(text.as_bytes(), 0, Shape::Geometry, usize::MAX).expect("valid");
        let geometry = parsed.geometry.expect("geometry");
        assert_eq!(geometry.members.len(), 1);
        assert_eq!(geometry.members[0].points, vec![[1.0, 2.0]]);
    }

    /// Issue 12, class 2: the cap applies while the properties are read, so the parsed
    /// feature holds at most `max_properties` entries however many the input has.
    #[test]
    fn properties_beyond_the_cap_are_counted_not_kept() {
        let names: Vec<String> = (0..10_000).map(|n| format!(r#""p{n}": {n}"#)).collect();
        let text = format!(
            r#"{{"type":"Feature","geometry":null,"properties":{{{}}}}}"#,
            names.join(",")
        );
        let parsed = parse(text.as_bytes(), 0, Shape::Feature, 5).expect("valid");
        assert_eq!(parsed.properties.len(), 5);
        assert!(
            parsed.properties.capacity() < 64,
            "no room kept for the rest"
        );
        assert_eq!(parsed.untracked_properties, 9_995);
    }

    #[test]
    fn null_geometry_and_properties() {
        let parsed =
            feature(r#"{"type":"Feature","geometry":null,"properties":null}"#).expect("valid");
        assert!(parsed.geometry.is_none());
        assert!(parsed.properties.is_empty());
    }

    #[test]
    fn malformed_coordinates_have_their_kind_and_offset() {
        // Each case names the text at which the error must point.
        let cases = [
            (
                r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[1]}}"#,
                "]}}",
            ),
            (
                r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[1,"a"]}}"#,
                "\"a\"",
            ),
            (
                r#"{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[1,2]]}}"#,
                "1,2",
            ),
            (
                r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[[1,2]]}}"#,
                "[1,2]",
            ),
        ];
        for (text, at) in cases {
            let err = feature(text).expect_err(text);
            assert_eq!(err.kind, ErrorKind::InvalidCoordinates, "{text}: {err}");
            let expected = text.find(at).expect("marker") as u64;
            assert_eq!(err.offset, Some(expected), "{text}: {err}");
        }
    }

    #[test]
    fn not_geojson_features_are_rejected() {
        for text in [
            r#"{"type":"Feature","geometry":{"type":"Circle","coordinates":[1,2]}}"#,
            r#"{"type":"Feature","geometry":{"coordinates":[1,2]}}"#,
            r#"{"type":"Feature","geometry":{"type":"Point"}}"#,
            r#"{"type":"Feature","geometry":[1,2]}"#,
            r#"{"type":"Feature","properties":[1]}"#,
            r#"{"type":"Thing"}"#,
            r#"{"geometry":null}"#,
        ] {
            assert_eq!(
                feature(text).expect_err(text).kind,
                ErrorKind::NotGeojson,
                "{text}"
            );
        }
    }
}
