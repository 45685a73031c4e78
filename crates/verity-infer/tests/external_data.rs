//! Models whose weights are stored as ONNX external data (`model.onnx` + `model.onnx.data`):
//! loaded from the file beside the graph, the same model as with embedded weights, and every
//! broken or hostile data file refused with a clear error.

mod common;

use std::path::{Path, PathBuf};

use verity_infer::{Engine, InferError, Model};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/testdata/external")
}

/// A copy of the external-data model in a scratch directory, for breaking.
fn scratch_copy() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("digits_mlp.onnx");
    let data = dir.path().join("digits_mlp.onnx.data");
    std::fs::copy(testdata().join("digits_mlp.onnx"), &model).unwrap();
    std::fs::copy(testdata().join("digits_mlp.onnx.data"), &data).unwrap();
    (dir, model, data)
}

#[test]
fn external_weights_load_into_the_same_model() {
    let external = Model::from_file(&testdata().join("digits_mlp.onnx")).unwrap();
    let embedded = common::model("digits_mlp.onnx");
    assert_eq!(external.weights_root(), embedded.weights_root());
    let engine = Engine::new(1).unwrap();
    let input = common::digit(0);
    let a = engine.run(&external, vec![input.clone()], true).unwrap();
    let b = engine.run(&embedded, vec![input], true).unwrap();
    assert_eq!(a.outputs, b.outputs);
    assert_eq!(a.trace.unwrap().root(), b.trace.unwrap().root());
}

/// The graph file alone does not fix the weights, so the model id binds them: another data file
/// (one weight changed) gives another id, and the id follows the documented rule.
#[test]
fn the_model_id_binds_the_external_weights() {
    let (_dir, model, data) = scratch_copy();
    let original = Model::from_file(&model).unwrap();
    let graph_hash = verity_types::sha256(&std::fs::read(&model).unwrap());
    assert_eq!(
        original.model_id(),
        verity_infer::external_model_id(&graph_hash, &original.weights_root())
    );
    assert_ne!(original.model_id(), graph_hash);
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&data, bytes).unwrap();
    let changed = Model::from_file(&model).unwrap();
    assert_ne!(changed.weights_root(), original.weights_root());
    assert_ne!(changed.model_id(), original.model_id());
}

#[test]
fn external_weights_need_the_file_path() {
    let bytes = std::fs::read(testdata().join("digits_mlp.onnx")).unwrap();
    let err = Model::from_bytes(&bytes).err().expect("loading must fail");
    assert!(
        err.to_string()
            .contains("load the model from its file, with the data file beside it"),
        "{err}"
    );
}

#[test]
fn a_truncated_data_file_is_refused_naming_it() {
    let (_dir, model, data) = scratch_copy();
    let len = std::fs::metadata(&data).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let err = Model::from_file(&model).err().expect("loading must fail");
    let text = err.to_string();
    assert!(matches!(err, InferError::Initializer { .. }), "{text}");
    assert!(
        text.contains("digits_mlp.onnx.data holds") && text.contains("is the file truncated?"),
        "{text}"
    );
}

#[test]
fn a_missing_data_file_is_refused_naming_it() {
    let (_dir, model, data) = scratch_copy();
    std::fs::remove_file(&data).unwrap();
    let text = Model::from_file(&model)
        .err()
        .expect("loading must fail")
        .to_string();
    assert!(
        text.contains("cannot open") && text.contains("digits_mlp.onnx.data"),
        "{text}"
    );
}

/// A model may not read files outside its own directory through a location like `../x`.
#[test]
fn a_location_outside_the_models_directory_is_refused() {
    let (_dir, model, _data) = scratch_copy();
    let bytes = std::fs::read(&model).unwrap();
    let (from, to) = (b"digits_mlp.onnx.data", b"../../../../etc/pass");
    assert_eq!(from.len(), to.len(), "same length keeps the protobuf valid");
    let mut hostile = bytes.clone();
    let mut replaced = 0;
    let mut i = 0;
    while i + from.len() <= hostile.len() {
        if &hostile[i..i + from.len()] == from {
            hostile[i..i + from.len()].copy_from_slice(to);
            replaced += 1;
        }
        i += 1;
    }
    assert!(replaced > 0);
    std::fs::write(&model, hostile).unwrap();
    let text = Model::from_file(&model)
        .err()
        .expect("loading must fail")
        .to_string();
    assert!(
        text.contains("is not a path inside the model's directory"),
        "{text}"
    );
}

#[test]
fn a_missing_model_file_says_so() {
    let err = Model::from_file(Path::new("/nonexistent/model.onnx"))
        .err()
        .expect("loading must fail");
    assert!(matches!(err, InferError::Read { .. }), "{err}");
    assert!(err
        .to_string()
        .starts_with("cannot read /nonexistent/model.onnx"));
}
