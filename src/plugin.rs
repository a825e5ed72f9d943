//! The plugin API: the [`Worker`] trait users implement, the codecs that turn a job's bytes
//! into the input a worker asks for (and its output back into bytes), and the [`Registry`]
//! of named plugins and codecs a binary is built with.
//!
//! A codec works on [`Payload`]: raw bytes, or a structured value (a `serde_json::Value`,
//! whatever format the codec reads). A worker declares the types it wants through
//! [`FromPayload`] / [`IntoPayload`]: `Bytes`, `String`, `Payload` itself, or `Json<T>` for
//! any serde type. So `decode = "json"` hands a `Json<T>` worker a parsed value, and a worker
//! that wants a `String` gets the text whether the codec was `raw` or `json`.

use crate::gearman::WorkUpdates;
use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A job's data between the codec and the worker.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Bytes(Bytes),
    Value(serde_json::Value),
}

/// Why a job failed: its message goes to the client (as WORK_EXCEPTION, for clients that
/// asked for exceptions) and into the stats table as the job's last error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkError {
    message: String,
}

impl WorkError {
    pub fn new(message: impl fmt::Display) -> Self {
        WorkError {
            message: message.to_string(),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for WorkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WorkError {}

/// A worker input type built from a decoded payload.
pub trait FromPayload: Sized {
    fn from_payload(payload: Payload) -> Result<Self, WorkError>;
}

/// A worker output type turned into a payload for the encoder.
pub trait IntoPayload {
    fn into_payload(self) -> Payload;
}

impl FromPayload for Payload {
    fn from_payload(payload: Payload) -> Result<Self, WorkError> {
        Ok(payload)
    }
}

impl IntoPayload for Payload {
    fn into_payload(self) -> Payload {
        self
    }
}

impl FromPayload for Bytes {
    fn from_payload(payload: Payload) -> Result<Self, WorkError> {
        match payload {
            Payload::Bytes(bytes) => Ok(bytes),
            Payload::Value(value) => Ok(Bytes::from(value.to_string())),
        }
    }
}

impl IntoPayload for Bytes {
    fn into_payload(self) -> Payload {
        Payload::Bytes(self)
    }
}

impl FromPayload for String {
    fn from_payload(payload: Payload) -> Result<Self, WorkError> {
        match payload {
            Payload::Bytes(bytes) => String::from_utf8(bytes.to_vec())
                .map_err(|e| WorkError::new(format!("the workload is not UTF-8 text: {e}"))),
            Payload::Value(serde_json::Value::String(text)) => Ok(text),
            Payload::Value(value) => Ok(value.to_string()),
        }
    }
}

impl IntoPayload for String {
    fn into_payload(self) -> Payload {
        Payload::Bytes(Bytes::from(self))
    }
}

impl IntoPayload for &'static str {
    fn into_payload(self) -> Payload {
        Payload::Bytes(Bytes::from_static(self.as_bytes()))
    }
}

/// Structured input or output: with `decode = "json"` the codec has parsed it already; with
/// `raw` the bytes are parsed as JSON here.
#[derive(Clone, Debug, PartialEq)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromPayload for Json<T> {
    fn from_payload(payload: Payload) -> Result<Self, WorkError> {
        let parsed = match payload {
            Payload::Value(value) => serde_json::from_value(value),
            Payload::Bytes(bytes) => serde_json::from_slice(&bytes),
        };
        parsed
            .map(Json)
            .map_err(|e| WorkError::new(format!("unexpected input: {e}")))
    }
}

impl<T: Serialize> IntoPayload for Json<T> {
    fn into_payload(self) -> Payload {
        match serde_json::to_value(self.0) {
            Ok(value) => Payload::Value(value),
            Err(e) => Payload::Value(serde_json::Value::String(format!(
                "unserializable output: {e}"
            ))),
        }
    }
}

/// Turns a job's bytes into a payload and a result payload back into bytes.
pub trait Codec: Send + Sync {
    fn decode(&self, bytes: Bytes) -> Result<Payload, String>;
    fn encode(&self, payload: Payload) -> Result<Bytes, String>;
}

/// Bytes as they are; a structured result is written as JSON text.
pub struct RawCodec;

impl Codec for RawCodec {
    fn decode(&self, bytes: Bytes) -> Result<Payload, String> {
        Ok(Payload::Bytes(bytes))
    }

    fn encode(&self, payload: Payload) -> Result<Bytes, String> {
        Ok(match payload {
            Payload::Bytes(bytes) => bytes,
            Payload::Value(value) => Bytes::from(value.to_string()),
        })
    }
}

/// JSON text ⇄ values. Raw bytes in a result become a JSON string.
pub struct JsonCodec;

impl Codec for JsonCodec {
    fn decode(&self, bytes: Bytes) -> Result<Payload, String> {
        serde_json::from_slice(&bytes)
            .map(Payload::Value)
            .map_err(|e| format!("json: invalid input: {e}"))
    }

    fn encode(&self, payload: Payload) -> Result<Bytes, String> {
        let value = match payload {
            Payload::Value(value) => value,
            Payload::Bytes(bytes) => match String::from_utf8(bytes.to_vec()) {
                Ok(text) => serde_json::Value::String(text),
                Err(_) => return Err("json: cannot encode bytes that are not UTF-8 text".into()),
            },
        };
        serde_json::to_vec(&value)
            .map(Bytes::from)
            .map_err(|e| format!("json: cannot encode the result: {e}"))
    }
}

/// What a worker knows about the job it runs, and how it reports progress.
pub struct JobContext {
    pub function: Arc<str>,
    pub handle: Bytes,
    pub unique: Bytes,
    updates: WorkUpdates,
    /// The stats slot of the worker loop running the job, where [`JobContext::set_state`]
    /// writes (none outside a host's worker process).
    slot: Option<crate::worker_process::Slot>,
}

impl JobContext {
    pub fn new(function: Arc<str>, handle: Bytes, unique: Bytes, updates: WorkUpdates) -> Self {
        JobContext {
            function,
            handle,
            unique,
            updates,
            slot: None,
        }
    }

    /// The context of a job run by a worker loop with this stats slot.
    pub(crate) fn with_slot(mut self, slot: Option<crate::worker_process::Slot>) -> Self {
        self.slot = slot;
        self
    }

    /// Shows `state` in the scoreboard in place of the process's `B` (busy) while this job
    /// runs, to say what it is doing (Parallel::Prefork::SpareWorkers' `set_state`): say `C`
    /// while it calls another service, `D` while it waits on a database. It lasts until it
    /// is set again, [`JobContext::clear_state`], or the job ends. A stopping process still
    /// shows `T`. It changes nothing else (the process counts as busy for scaling).
    ///
    /// `state` is one printable ASCII character other than space and the scoreboard's own
    /// letters (`_ B S T .`); anything else is refused, and the state is left as it was.
    /// Cheap (one atomic store), so it may be called often, from any of the job's threads.
    pub fn set_state(&self, state: char) -> Result<(), crate::stats::InvalidState> {
        let state = crate::stats::CustomState::try_from(state)?;
        self.write_state(Some(state));
        Ok(())
    }

    /// Back to plain `B` (busy).
    pub fn clear_state(&self) {
        self.write_state(None);
    }

    fn write_state(&self, state: Option<crate::stats::CustomState>) {
        if let Some((table, index)) = self.slot.as_deref() {
            if let Ok(writer) = table.writer(*index) {
                writer.set_custom_state(state);
            }
        }
    }

    /// WORK_STATUS: `numerator` of `denominator` done.
    pub fn status(&self, numerator: u32, denominator: u32) {
        self.updates.status(numerator, denominator);
    }

    /// WORK_DATA: a chunk of the result, sent now.
    pub fn data(&self, data: impl Into<Bytes>) {
        self.updates.data(data);
    }

    /// WORK_WARNING.
    pub fn warning(&self, data: impl Into<Bytes>) {
        self.updates.warning(data);
    }
}

/// A plugin worker: implement this, register it under a name, and jobs configured with
/// `worker = "that name"` run it.
#[async_trait]
pub trait Worker: Send + Sync + 'static {
    /// What the job's decoded workload is turned into.
    type Input: FromPayload + Send;
    /// What the worker returns for the encoder.
    type Output: IntoPayload + Send;

    async fn run(&self, job: &JobContext, input: Self::Input) -> Result<Self::Output, WorkError>;

    /// Runs before every job. Synchronous, like Gearman::Driver's: a hook that needs to wait
    /// belongs in `run`. (Being plain methods, unused hooks cost nothing per job.)
    fn begin(&self, _job: &JobContext) {}

    /// Runs after every job, even one that failed or panicked.
    fn end(&self, _job: &JobContext) {}
}

/// The object-safe face of a [`Worker`], as the registry stores it: one call runs `begin`,
/// the job and `end` (which runs even when the job failed or panicked).
#[async_trait]
pub trait DynWorker: Send + Sync {
    async fn call(&self, job: &JobContext, input: Payload) -> Result<Payload, WorkError>;
}

#[async_trait]
impl<W: Worker> DynWorker for W {
    async fn call(&self, job: &JobContext, input: Payload) -> Result<Payload, WorkError> {
        use futures_util::FutureExt;
        Worker::begin(self, job);
        let result = match W::Input::from_payload(input) {
            Err(e) => Err(e),
            Ok(input) => match std::panic::AssertUnwindSafe(self.run(job, input))
                .catch_unwind()
                .await
            {
                Ok(result) => result.map(IntoPayload::into_payload),
                Err(panic) => Err(WorkError::new(format!(
                    "panic: {}",
                    panic_message(panic.as_ref())
                ))),
            },
        };
        Worker::end(self, job);
        result
    }
}

/// The text of a panic's payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".into()
    }
}

/// The plugins and codecs a binary knows, by name.
#[derive(Clone)]
pub struct Registry {
    plugins: BTreeMap<String, Arc<dyn DynWorker>>,
    codecs: BTreeMap<String, Arc<dyn Codec>>,
}

impl Registry {
    /// The `raw` and `json` codecs and no plugins.
    pub fn empty() -> Self {
        let mut registry = Registry {
            plugins: BTreeMap::new(),
            codecs: BTreeMap::new(),
        };
        registry = registry.codec("raw", RawCodec).codec("json", JsonCodec);
        registry
    }

    /// The codecs and the built-in workers of `workers/` (echo, reverse, sleep, fail, exit…).
    pub fn with_builtins() -> Self {
        crate::workers::register_builtins(Registry::empty())
    }

    /// Adds (or replaces) a plugin.
    pub fn register(mut self, name: impl Into<String>, worker: impl Worker) -> Self {
        self.plugins.insert(name.into(), Arc::new(worker));
        self
    }

    /// Adds (or replaces) a codec.
    pub fn codec(mut self, name: impl Into<String>, codec: impl Codec + 'static) -> Self {
        self.codecs.insert(name.into(), Arc::new(codec));
        self
    }

    pub fn plugin(&self, name: &str) -> Option<Arc<dyn DynWorker>> {
        self.plugins.get(name).cloned()
    }

    pub fn get_codec(&self, name: &str) -> Option<Arc<dyn Codec>> {
        self.codecs.get(name).cloned()
    }

    pub fn has_plugin(&self, name: &str) -> bool {
        self.plugins.contains_key(name)
    }

    pub fn has_codec(&self, name: &str) -> bool {
        self.codecs.contains_key(name)
    }

    pub fn plugin_names(&self) -> Vec<&str> {
        self.plugins.keys().map(String::as_str).collect()
    }

    pub fn codec_names(&self) -> Vec<&str> {
        self.codecs.keys().map(String::as_str).collect()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_builtins()
    }
}
