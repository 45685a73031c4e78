//! Initializers stored outside the model file (ONNX external data: `model.onnx` beside
//! `model.onnx.data`), read tensor by tensor so that loading never holds the weights twice.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use crate::proto::TensorProto;
use crate::tensor::{decode_raw, element_count, DataType, Tensor, TensorError};

/// Reads external tensors from files under one directory (the model file's).
pub(crate) struct ExternalData {
    dir: PathBuf,
    files: HashMap<String, (File, u64)>,
}

impl ExternalData {
    pub fn new(dir: &Path) -> ExternalData {
        ExternalData {
            dir: dir.to_path_buf(),
            files: HashMap::new(),
        }
    }

    /// Whether any tensor was read from outside the model file.
    pub fn used(&self) -> bool {
        !self.files.is_empty()
    }

    /// The files read so far, by the locations the graph names them with, sorted.
    pub fn locations(&self) -> Vec<String> {
        let mut names: Vec<String> = self.files.keys().cloned().collect();
        names.sort();
        names
    }

    /// The tensor `proto` describes, its bytes read from the file its `location` names.
    pub fn tensor(&mut self, proto: &TensorProto) -> Result<Tensor, TensorError> {
        let bad = |reason: String| TensorError::External(reason);
        let mut location = None;
        let (mut offset, mut length) = (0u64, None);
        for entry in &proto.external_data {
            let number = || {
                entry
                    .value
                    .parse::<u64>()
                    .map_err(|_| bad(format!("{} {:?} is not a number", entry.key, entry.value)))
            };
            match entry.key.as_str() {
                "location" => location = Some(entry.value.clone()),
                "offset" => offset = number()?,
                "length" => length = Some(number()?),
                "checksum" | "basepath" => {}
                other => return Err(bad(format!("unknown external-data key {other:?}"))),
            }
        }
        let location = location.ok_or_else(|| bad("no location is given".into()))?;
        // The data must live beside the model: a location may not climb out of its directory.
        let relative = Path::new(&location);
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(bad(format!(
                "location {location:?} is not a path inside the model's directory"
            )));
        }
        if proto.dims.iter().any(|&d| d < 0) {
            return Err(TensorError::NegativeDim(proto.dims.clone()));
        }
        let shape: Vec<usize> = proto.dims.iter().map(|&d| d as usize).collect();
        let count =
            element_count(&shape).ok_or_else(|| TensorError::TooLarge(proto.dims.clone()))?;
        let dtype = DataType::from_onnx(proto.data_type).map_err(TensorError::UnsupportedType)?;
        let expected = (count * dtype.size_of()) as u64;
        if length.is_some_and(|l| l != expected) {
            return Err(bad(format!(
                "length {} does not match the {expected} bytes of {:?} {dtype}",
                length.unwrap_or(0),
                shape
            )));
        }
        if !self.files.contains_key(&location) {
            let path = self.dir.join(relative);
            let file = File::open(&path)
                .map_err(|e| bad(format!("cannot open {}: {e}", path.display())))?;
            let size = file
                .metadata()
                .map_err(|e| bad(format!("{}: {e}", path.display())))?
                .len();
            self.files.insert(location.clone(), (file, size));
        }
        let (file, size) = self.files.get_mut(&location).expect("opened above");
        let end = offset.checked_add(expected).filter(|&e| e <= *size);
        if end.is_none() {
            return Err(bad(format!(
                "{location} holds {size} bytes; the tensor needs bytes {offset}..{} (is the file truncated?)",
                offset.saturating_add(expected)
            )));
        }
        let mut raw = vec![0u8; expected as usize];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut raw))
            .map_err(|e| bad(format!("reading {location}: {e}")))?;
        Tensor::new(shape, decode_raw(dtype, &raw, count)?)
    }
}
