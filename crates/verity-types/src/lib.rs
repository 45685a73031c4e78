//! Verity's shared vocabulary: the types every other crate speaks.
//!
//! This crate stays free of heavy dependencies so that everything can depend on it.

mod address;
pub mod amount;
pub mod codec;
mod data;
mod hash;
pub mod language;
pub mod schema;
mod secret_file;
pub mod serde_hex;
mod task;
mod tx;
pub mod validator;
pub mod weight;

pub use address::{
    keccak256, recover_signer, AccountKey, Address, AddressParseError, KeyError, SignatureError,
};
pub use amount::{Amount, ONE_TOKEN};
pub use data::{
    verify_data_key, Anchor, DataProof, DataRejection, DataVerdict, Evaluation, ANCHOR_DOMAIN,
    DATA_KEY_DOMAIN, DATA_PROOF_DOMAIN, MAX_RSA_KEY_BYTES, MAX_SCORE, MAX_URL_LEN,
};
pub use hash::{sha256, Hash, HashParseError};
pub use language::{
    generation_leaf, sampling_seed, ExternalWeights, GeneratedToken, GenerationDocument,
    GenerationFinish, GenerationLimits, LanguageSpec, ModelFile, PromptDocument, PromptMessage,
};
pub use secret_file::write_secret;
pub use task::{
    verify_receipts, DataRef, EnclaveKey, FailureReason, FailureReceipt, Mode, ReceiptError,
    TaskReceipt, ZkReceipt, FAILURE_DOMAIN, MAX_PROOF_BYTES, RECEIPT_BYTES, RECEIPT_DOMAIN,
    ZK_RECEIPT_DOMAIN,
};
pub use tx::{
    registration_commitment, Action, Asset, FeeSchedule, ModelSpec, SignedTx, TxBody,
    MAX_CHAIN_ID_LEN, MAX_LABEL_LEN, MAX_ONE_STEP_INPUT_BYTES, MAX_RECEIPTS_PER_TX, MAX_REVEALED,
    MAX_REVEALED_OUTPUT_BYTES, MAX_SERVED_MODELS, MAX_TX_BYTES, MAX_VERIFYING_KEY_BYTES,
    MAX_WITNESS_BYTES, REGISTRATION_DOMAIN, TX_DOMAIN,
};
pub use validator::ValidatorIdentity;
