//! Where the state machine reads model files. Disputes re-execute one step of a model, and they
//! read its graph and weights from the file whose SHA-256 is the model id, never from what its
//! registrant claimed. The node gives a loader over its blob store; the state machine checks the
//! hash, parses once and keeps the parsed model. A language model is several files (graph,
//! weights in parts, tokenizer, generation config): each part is checked against the hash its
//! registration names and the files are written under the node's directory for them, once.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use verity_infer::{Engine, Model};
use verity_lm::task::holds;
use verity_lm::ServedModel;
use verity_types::{sha256, Hash, LanguageSpec};

use crate::StateError;

type Loader = Box<dyn Fn(&Hash) -> Option<Vec<u8>> + Send + Sync>;

/// Model files by id, hash-checked and parsed once; and models' Groth16 verifying keys,
/// prepared once (a key never changes once set).
pub struct ModelSource {
    load: Loader,
    parsed: Mutex<HashMap<Hash, Arc<Model>>>,
    languages: Mutex<HashMap<Hash, Arc<ServedModel>>>,
    language_dir: Option<PathBuf>,
    engine: Engine,
    zk_keys: Mutex<HashMap<Hash, verity_zk::PreparedKey>>,
}

/// What a language model's files turned out to be.
pub enum LoadedLanguage {
    Model(Arc<ServedModel>),
    /// The files hash right but do not load: the same on every node.
    Invalid(String),
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
            languages: Mutex::new(HashMap::new()),
            language_dir: None,
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

    /// Where language models' files are written for loading, one directory per model.
    pub fn with_language_dir(mut self, dir: PathBuf) -> Self {
        self.language_dir = Some(dir);
        self
    }

    /// The language model `id` registered as `spec`: its files fetched with the loader, each
    /// part checked, written under the language directory (a file already there is used if it
    /// checks), loaded once and kept. Files that hash right but do not load are `Invalid`, the
    /// same on every node.
    pub fn language(&self, id: &Hash, spec: &LanguageSpec) -> Result<LoadedLanguage, StateError> {
        if let Some(model) = self.languages.lock().expect("language cache lock").get(id) {
            return Ok(LoadedLanguage::Model(model.clone()));
        }
        let halt = |why: String| StateError::Halted(format!("language model {id}: {why}"));
        let dir = self
            .language_dir
            .as_ref()
            .ok_or_else(|| halt("this node has no directory for language models' files".into()))?
            .join(id.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| halt(format!("{}: {e}", dir.display())))?;
        for file in spec.files() {
            let path = dir.join(file.name);
            if holds(&path, &file.parts) {
                continue;
            }
            // Written whole under another name, then renamed: a crash never leaves a torn file.
            let partial = dir.join(format!(".{}.partial", file.name));
            let write = |bytes: &[u8], out: &mut std::fs::File| {
                out.write_all(bytes)
                    .map_err(|e| halt(format!("writing {}: {e}", partial.display())))
            };
            let mut out = std::fs::File::create(&partial)
                .map_err(|e| halt(format!("creating {}: {e}", partial.display())))?;
            for part in &file.parts {
                let bytes = (self.load)(&part.hash).ok_or_else(|| {
                    halt(format!(
                        "file {} is in neither this node's blob store nor its IPFS node; a validator needs every file of a model it re-executes",
                        part.hash
                    ))
                })?;
                if sha256(&bytes) != part.hash {
                    return Err(halt(format!(
                        "the stored file {} does not hash to it",
                        part.hash
                    )));
                }
                write(&bytes, &mut out)?;
            }
            out.sync_all()
                .map_err(|e| halt(format!("writing {}: {e}", partial.display())))?;
            std::fs::rename(&partial, &path)
                .map_err(|e| halt(format!("writing {}: {e}", path.display())))?;
        }
        match ServedModel::load(&dir) {
            Ok(model) => {
                let model = Arc::new(model);
                self.languages
                    .lock()
                    .expect("language cache lock")
                    .insert(*id, model.clone());
                Ok(LoadedLanguage::Model(model))
            }
            Err(e) => Ok(LoadedLanguage::Invalid(e.to_string())),
        }
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
