//! Reading S3 event notifications out of SQS message bodies.
//!
//! Pure parsing, no I/O. It accepts what S3 actually sends, including the cases the classic
//! poller got wrong: every record of a message (not only `Records[0]`), keys URL-encoded the
//! way S3 encodes them (`+` for a space, `%XX` for the rest), the `s3:TestEvent` that S3
//! sends once when a notification is configured, notifications wrapped in an SNS envelope
//! (S3 → SNS → SQS without raw delivery), and every `2.x` event version.
//!
//! [`created_body`] builds the same shape for objects that never had an event (the
//! controller's `backfill`), so a queued work item is exactly what S3 would have sent.

use serde::Deserialize;
use serde_json::Value;

/// What one SQS message body turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// S3's connectivity test, sent when a notification configuration is saved; nothing to
    /// process.
    TestEvent {
        /// The bucket that was configured, when the event names it.
        bucket: Option<String>,
    },
    /// An S3 event with its records, in order.
    Records(Vec<Record>),
}

/// One record of an S3 event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An object was created (or an archived one restored): process it.
    Created(ObjectRef),
    /// Any other event (removal, restore, replication, ...): nothing to process.
    Ignored {
        /// The record's `eventName`, for the log.
        event_name: String,
    },
    /// A record that claims to be an S3 record but cannot be used.
    Invalid {
        /// Why it cannot be used.
        reason: String,
    },
}

/// The object an ObjectCreated record points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Source bucket.
    pub bucket: String,
    /// Source key, URL-decoded.
    pub key: String,
    /// Size announced by the event, used to refuse huge objects before downloading them.
    pub size: Option<u64>,
    /// ETag announced by the event.
    pub etag: Option<String>,
    /// Version the event is about, on a versioned bucket.
    pub version_id: Option<String>,
}

/// A body that is not an S3 event notification at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message body is not an S3 event notification: {reason}")]
pub struct NotAnEvent {
    /// What is wrong with it.
    pub reason: String,
}

fn not_an_event(reason: impl Into<String>) -> NotAnEvent {
    NotAnEvent {
        reason: reason.into(),
    }
}

/// Parses an SQS message body into a [`Notification`].
pub fn parse_body(body: &str) -> Result<Notification, NotAnEvent> {
    let value: Value = serde_json::from_str(body)
        .map_err(|err| not_an_event(format!("body is not JSON ({err})")))?;
    parse_value(value, true)
}

fn parse_value(value: Value, may_unwrap_sns: bool) -> Result<Notification, NotAnEvent> {
    let Value::Object(object) = value else {
        return Err(not_an_event("body is not a JSON object"));
    };
    if may_unwrap_sns && object.get("Type").and_then(Value::as_str) == Some("Notification") {
        let message = object
            .get("Message")
            .and_then(Value::as_str)
            .ok_or_else(|| not_an_event("SNS notification without a Message string"))?;
        let inner: Value = serde_json::from_str(message)
            .map_err(|err| not_an_event(format!("SNS Message is not JSON ({err})")))?;
        return parse_value(inner, false);
    }
    if object.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notification::TestEvent {
            bucket: object
                .get("Bucket")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    let records = object
        .get("Records")
        .ok_or_else(|| not_an_event("no Records member"))?
        .as_array()
        .ok_or_else(|| not_an_event("Records is not an array"))?;
    Ok(Notification::Records(
        records.iter().map(parse_record).collect(),
    ))
}

/// The parts of a record the worker reads; everything else is ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecord {
    event_version: Option<String>,
    event_name: Option<String>,
    s3: Option<RawS3>,
}

#[derive(Debug, Deserialize)]
struct RawS3 {
    bucket: Option<RawBucket>,
    object: Option<RawObject>,
}

#[derive(Debug, Deserialize)]
struct RawBucket {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawObject {
    key: Option<String>,
    size: Option<u64>,
    e_tag: Option<String>,
    version_id: Option<String>,
}

fn parse_record(value: &Value) -> Record {
    let invalid = |reason: String| Record::Invalid { reason };
    let raw: RawRecord = match RawRecord::deserialize(value) {
        Ok(raw) => raw,
        Err(err) => return invalid(format!("record has an unexpected shape ({err})")),
    };
    let Some(event_name) = raw.event_name else {
        return invalid("record has no eventName".to_owned());
    };
    match raw.event_version.as_deref() {
        Some(version) if version.split('.').next() == Some("2") => {}
        Some(version) => return invalid(format!("unsupported eventVersion {version}")),
        None => return invalid("record has no eventVersion".to_owned()),
    }
    // A restored archived object can be read now: process it like a new upload (its earlier
    // outcome said `object_archived`).
    if !event_name.starts_with("ObjectCreated:") && event_name != "ObjectRestore:Completed" {
        return Record::Ignored { event_name };
    }
    let Some(s3) = raw.s3 else {
        return invalid(format!("{event_name} record has no s3 member"));
    };
    let Some(bucket) = s3.bucket.and_then(|bucket| bucket.name) else {
        return invalid(format!("{event_name} record names no bucket"));
    };
    let Some(object) = s3.object else {
        return invalid(format!("{event_name} record has no object"));
    };
    let Some(raw_key) = object.key.filter(|key| !key.is_empty()) else {
        return invalid(format!("{event_name} record names no key"));
    };
    Record::Created(ObjectRef {
        bucket,
        key: decode_key(&raw_key),
        size: object.size,
        etag: object.e_tag,
        version_id: object.version_id.filter(|version| !version.is_empty()),
    })
}

/// Decodes a key the way S3 encodes it in events: `+` is a space, then `%XX` escapes.
///
/// A `%` not followed by two hex digits is kept as it is, so a malformed key leads to a
/// clear "object missing" report instead of a parse failure that hides which key it was.
pub fn decode_key(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => {
                decoded.push(b' ');
                index += 1;
            }
            b'%' => match (
                hex_value(bytes.get(index + 1)),
                hex_value(bytes.get(index + 2)),
            ) {
                (Some(high), Some(low)) => {
                    decoded.push(high << 4 | low);
                    index += 3;
                }
                _ => {
                    decoded.push(b'%');
                    index += 1;
                }
            },
            other => {
                decoded.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Encodes a key the way S3 does in events: unreserved bytes and `/` stay, a space becomes
/// `+`, every other byte `%XX`. [`decode_key`] inverts it.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// The body of an `ObjectCreated:Put` notification for one object, as S3 sends it (event
/// version 2.1, key encoded), with `principalId` naming who queued it instead of S3.
pub fn created_body(object: &ObjectRef, region: &str, principal: &str) -> String {
    let mut s3_object = serde_json::json!({ "key": encode_key(&object.key) });
    if let Some(size) = object.size {
        s3_object["size"] = size.into();
    }
    if let Some(etag) = &object.etag {
        s3_object["eTag"] = etag.as_str().into();
    }
    serde_json::json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": region,
            "eventName": "ObjectCreated:Put",
            "userIdentity": { "principalId": principal },
            "s3": {
                "s3SchemaVersion": "1.0",
                "bucket": { "name": object.bucket, "arn": format!("arn:aws:s3:::{}", object.bucket) },
                "object": s3_object,
            }
        }]
    })
    .to_string()
}

fn hex_value(byte: Option<&u8>) -> Option<u8> {
    match byte? {
        digit @ b'0'..=b'9' => Some(digit - b'0'),
        letter @ b'a'..=b'f' => Some(letter - b'a' + 10),
        letter @ b'A'..=b'F' => Some(letter - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(version: &str, name: &str, bucket: &str, key: &str) -> String {
        format!(
            r#"{{"eventVersion":"{version}","eventSource":"aws:s3","eventName":"{name}",
                "s3":{{"bucket":{{"name":"{bucket}"}},"object":{{"key":"{key}","size":42,"eTag":"abc"}}}}}}"#
        )
    }

    fn created(bucket: &str, key: &str) -> Record {
        Record::Created(ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
            size: Some(42),
            etag: Some("abc".into()),
            version_id: None,
        })
    }

    #[test]
    fn the_version_an_event_names_is_kept_and_restores_are_processed() {
        let body = r#"{"Records":[{"eventVersion":"2.1","eventName":"ObjectRestore:Completed",
            "s3":{"bucket":{"name":"b12"},"object":{"key":"k","versionId":"v-3"}}}]}"#;
        let Ok(Notification::Records(records)) = parse_body(body) else {
            panic!("records expected");
        };
        let Record::Created(object) = &records[0] else {
            panic!("a restore is processed: {records:?}");
        };
        assert_eq!(object.version_id.as_deref(), Some("v-3"));
    }

    #[test]
    fn every_record_of_a_message_is_returned_in_order() {
        let body = format!(
            r#"{{"Records":[{},{},{}]}}"#,
            record("2.1", "ObjectCreated:Put", "b", "one.geojson"),
            record("2.1", "ObjectRemoved:Delete", "b", "gone.geojson"),
            record(
                "2.2",
                "ObjectCreated:CompleteMultipartUpload",
                "b",
                "two.geojson"
            ),
        );
        assert_eq!(
            parse_body(&body),
            Ok(Notification::Records(vec![
                created("b", "one.geojson"),
                Record::Ignored {
                    event_name: "ObjectRemoved:Delete".into()
                },
                created("b", "two.geojson"),
            ]))
        );
    }

    #[test]
    fn keys_are_url_decoded_plus_first() {
        let body = format!(
            r#"{{"Records":[{}]}}"#,
            record("2.1", "ObjectCreated:Put", "b", "dir/a+b%2Bc%C3%A9.geojson")
        );
        assert_eq!(
            parse_body(&body),
            Ok(Notification::Records(vec![created(
                "b",
                "dir/a b+cé.geojson"
            )]))
        );
    }

    #[test]
    fn the_s3_test_event_is_recognised() {
        let body = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-01-01T00:00:00.000Z",
                      "Bucket":"uploads","RequestId":"X","HostId":"Y"}"#;
        assert_eq!(
            parse_body(body),
            Ok(Notification::TestEvent {
                bucket: Some("uploads".into())
            })
        );
    }

    #[test]
    fn sns_envelopes_are_unwrapped() {
        let inner = format!(
            r#"{{"Records":[{}]}}"#,
            record("2.1", "ObjectCreated:Put", "b", "k.geojson")
        );
        let envelope = serde_json::json!({
            "Type": "Notification",
            "MessageId": "m",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
            "Message": inner,
        });
        assert_eq!(
            parse_body(&envelope.to_string()),
            Ok(Notification::Records(vec![created("b", "k.geojson")]))
        );
    }

    #[test]
    fn versions_other_than_2_and_incomplete_records_are_invalid() {
        let table = [
            record("1.0", "ObjectCreated:Put", "b", "k"),
            record("3.0", "ObjectCreated:Put", "b", "k"),
            record("2.1", "ObjectCreated:Put", "b", ""),
            r#"{"eventVersion":"2.1","eventName":"ObjectCreated:Put"}"#.to_owned(),
            r#"{"eventVersion":"2.1","eventName":"ObjectCreated:Put","s3":{"object":{"key":"k"}}}"#
                .to_owned(),
            r#"{"eventName":"ObjectCreated:Put","s3":{}}"#.to_owned(),
            r#""just a string""#.to_owned(),
        ];
        for raw in table {
            let body = format!(r#"{{"Records":[{raw}]}}"#);
            let parsed = parse_body(&body).expect("still an event");
            assert!(
                matches!(parsed, Notification::Records(ref records) if matches!(records[..], [Record::Invalid { .. }])),
                "{raw} gave {parsed:?}"
            );
        }
    }

    #[test]
    fn bodies_that_are_not_events_are_refused() {
        for body in [
            "",
            "hello",
            "[1,2]",
            r#"{"foo":1}"#,
            r#"{"Records":{}}"#,
            r#"{"Type":"Notification","Message":"not json"}"#,
            r#"{"Type":"Notification"}"#,
        ] {
            assert!(parse_body(body).is_err(), "{body:?} was accepted");
        }
    }

    #[test]
    fn malformed_escapes_are_kept_literally() {
        assert_eq!(decode_key("100%"), "100%");
        assert_eq!(decode_key("a%zzb"), "a%zzb");
        assert_eq!(decode_key("a%4"), "a%4");
        assert_eq!(decode_key("%41%42"), "AB");
    }

    #[test]
    fn built_bodies_parse_back_to_the_object() {
        let object = ObjectRef {
            bucket: "uploads".into(),
            key: "batch 1/é+x%.geojson".into(),
            size: Some(42),
            etag: Some("abc".into()),
            version_id: None,
        };
        let body = created_body(&object, "us-east-1", "geobatch-backfill");
        assert_eq!(
            parse_body(&body),
            Ok(Notification::Records(vec![Record::Created(object)]))
        );
    }

    proptest! {
        #[test]
        fn decoding_inverts_s3_encoding(key in "\\PC{0,40}") {
            prop_assert_eq!(decode_key(&encode_key(&key)), key);
        }
    }
}
