//! In-memory [`Queue`] and [`ObjectStore`] for the delivery-rule unit tests: they record
//! every call in one shared log (so a test can check that the delete came after the write)
//! and can be told to fail or hang a call. The emulator tests cover the real SDK calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::Message;

use crate::config::{RunArgs, WorkerConfig};
use crate::objects::{GetError, GetRequest, GetResponse, ObjectStore};
use crate::queue::Queue;
use crate::sdk_error::GetErrorKind;

/// What a faked call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Succeeds at once.
    #[default]
    Answer,
    /// Fails at once.
    Fail,
    /// Never answers.
    Hang,
}

/// One call, as the log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// GetObject of a key.
    Get(String),
    /// PutObject of a key, with the document written.
    Put(String, serde_json::Value),
    /// DeleteMessage.
    Delete,
    /// ChangeMessageVisibility to this many seconds.
    Visibility(u64),
    /// SendMessage with these attributes.
    Send(HashMap<String, String>),
}

/// The behaviour of every faked call, and the log they share.
#[derive(Debug, Default)]
pub struct World {
    /// Objects by key: body, or the failure a read gets.
    pub objects: HashMap<String, Result<Vec<u8>, GetErrorKind>>,
    /// Reads of keys not in `objects` hang instead of answering 404.
    pub get: Behaviour,
    /// PutObject.
    pub put: Behaviour,
    /// DeleteMessage.
    pub delete: Behaviour,
    /// ChangeMessageVisibility.
    pub visibility: Behaviour,
    /// SendMessage.
    pub send: Behaviour,
    /// Every call, in order.
    pub log: Vec<Call>,
}

/// A shared [`World`]; both fakes hold one.
#[derive(Debug, Clone, Default)]
pub struct Fakes(Arc<Mutex<World>>);

impl Fakes {
    /// Locks the world (a test's own panic cannot leave it half-updated).
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The calls so far.
    pub fn log(&self) -> Vec<Call> {
        self.world().log.clone()
    }

    async fn call<T>(
        &self,
        call: Call,
        behaviour: impl Fn(&World) -> Behaviour,
        value: T,
    ) -> Result<T, String> {
        let behaviour = {
            let mut world = self.world();
            world.log.push(call);
            behaviour(&world)
        };
        match behaviour {
            Behaviour::Answer => Ok(value),
            Behaviour::Fail => Err("injected failure".to_owned()),
            Behaviour::Hang => std::future::pending().await,
        }
    }
}

impl Queue for Fakes {
    async fn receive(
        &self,
        _max_messages: usize,
        _wait: Duration,
        _visibility: Duration,
    ) -> Result<Vec<Message>, String> {
        Ok(Vec::new())
    }

    async fn delete(&self, _receipt_handle: &str) -> Result<(), String> {
        self.call(Call::Delete, |world| world.delete, ()).await
    }

    async fn set_visibility(
        &self,
        _receipt_handle: &str,
        visibility: Duration,
    ) -> Result<(), String> {
        self.call(
            Call::Visibility(visibility.as_secs()),
            |world| world.visibility,
            (),
        )
        .await
    }

    async fn send(&self, _body: &str, attributes: &HashMap<String, String>) -> Result<(), String> {
        self.call(Call::Send(attributes.clone()), |world| world.send, ())
            .await
    }
}

impl ObjectStore for Fakes {
    async fn get(&self, request: GetRequest<'_>) -> Result<GetResponse, GetError> {
        let (found, behaviour) = {
            let mut world = self.world();
            world.log.push(Call::Get(request.key.to_owned()));
            (world.objects.get(request.key).cloned(), world.get)
        };
        match found {
            Some(Ok(body)) => Ok(GetResponse {
                content_length: Some(body.len() as u64),
                etag: Some("etag-1".to_owned()),
                version_id: None,
                body: ByteStream::from(body),
            }),
            Some(Err(kind)) => Err(GetError {
                kind,
                message: format!("injected {kind:?}"),
            }),
            None if behaviour == Behaviour::Hang => std::future::pending().await,
            None => Err(GetError {
                kind: GetErrorKind::Missing,
                message: "NoSuchKey".to_owned(),
            }),
        }
    }

    async fn put(&self, _bucket: &str, key: &str, body: Vec<u8>) -> Result<(), String> {
        let document = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        self.call(Call::Put(key.to_owned(), document), |world| world.put, ())
            .await
    }
}

/// Settings for the delivery-rule tests: input bucket `in1`, output `s3://out1/results/`,
/// and, unless `extra` sets them, visibility 30 s, call deadline 5 s, retry base 10 s.
pub fn config(extra: &[&str]) -> WorkerConfig {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }
    let mut argv = vec![
        "geobatch-worker",
        "--queue-url",
        "http://sqs/q",
        "--output",
        "s3://out1/results/",
        "--allowed-buckets",
        "in1",
    ];
    argv.extend_from_slice(extra);
    let defaults = [
        ("--visibility-timeout", "30s"),
        ("--retry-base-delay", "10s"),
        ("--aws-call-timeout", "5s"),
    ];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            argv.extend_from_slice(&[flag, value]);
        }
    }
    let args = <Cli as clap::Parser>::parse_from(argv).run;
    let mut config = WorkerConfig::from_args(args).unwrap_or_else(|err| panic!("{err}"));
    config.metrics_addr = None;
    config
}
