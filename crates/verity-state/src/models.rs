//! Where the state machine reads model files. Disputes re-execute one step of a model, and they
//! read its graph and weights from the file whose SHA-256 is the model id, never from what its
//! registrant claimed. The node gives a loader over its blob store; the state machine checks the
//! hash, parses once and keeps the parsed model.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use verity_infer::{Engine, Model};
use verity_types::{sha256, Hash};

use crate::StateError;

type Loader = Box<dyn Fn(&Hash) -> Option<Vec<u8>> + Send + Sync>;

/// Model files by id, hash-checked and parsed once; and models' Groth16 verifying keys,
/// prepared once (a key never changes once set).
pub struct ModelSource {
    load: Loader,
    parsed: Mutex<HashMap<Hash, Arc<Model>>>,
    engine: Engine,
    zk_keys: Mutex<HashMap<Hash, verity_zk::PreparedKey>>,
}

/// What a model file turned out to be.
pub enum Loaded {
    Model(Arc<Model>),
    /// The bytes hash to the id but are not a model this engine runs: the same on every node.
    Invalid(String),
}

impl ModelSource {
    /// Reads files with `load` (the bytes stored under a model id, if any).
    pub fn new(load: impl Fn(&Hash) -> Option<Vec<u8>> + Send + Sync + 'static) -> Self {
        Self {
            load: Box::new(load),
            parsed: Mutex::new(HashMap::new()),
            // One thread: a one-step runs a single node, and a block's execution must not
            // compete with itself.
            engine: Engine::new(1).expect("a one-thread pool starts"),
            zk_keys: Mutex::new(HashMap::new()),
        }
    }

    /// Model `id`'s verifying key `bytes` (from its registry entry), prepared for verifying.
    pub fn zk_key(
        &self,
        id: &Hash,
        bytes: &[u8],
    ) -> Result<verity_zk::PreparedKey, verity_zk::ZkError> {
        if let Some(key) = self.zk_keys.lock().expect("zk key cache lock").get(id) {
            return Ok(key.clone());
        }
        let key = verity_zk::VerifyingKey::from_bytes(bytes)?.prepare();
        self.zk_keys
            .lock()
            .expect("zk key cache lock")
            .insert(*id, key.clone());
        Ok(key)
    }

    /// A source with no files: a chain that never re-executes (tests of other rules).
    pub fn none() -> Self {
        Self::new(|_| None)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The model with this id. A node without its file cannot execute the block the same way as
    /// the others, so it stops rather than diverge.
    pub fn get(&self, id: &Hash) -> Result<Loaded, StateError> {
        if let Some(model) = self.parsed.lock().expect("model cache lock").get(id) {
            return Ok(Loaded::Model(model.clone()));
        }
        let bytes = (self.load)(id).ok_or_else(|| {
            StateError::Halted(format!(
                "model file {id} is in neither this node's blob store nor its IPFS node; a validator needs the file of every model it re-executes: upload it to this node (PUT /v1/blobs) and restart it to execute this block again"
            ))
        })?;
        if sha256(&bytes) != *id {
            return Err(StateError::Halted(format!(
                "the stored file for model {id} does not hash to it"
            )));
        }
        match Model::from_bytes(&bytes) {
            Ok(model) => {
                let model = Arc::new(model);
                self.parsed
                    .lock()
                    .expect("model cache lock")
                    .insert(*id, model.clone());
                Ok(Loaded::Model(model))
            }
            Err(e) => Ok(Loaded::Invalid(e.to_string())),
        }
    }
}
