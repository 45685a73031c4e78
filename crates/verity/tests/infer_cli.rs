//! `verity infer` as a user runs it: outputs, exit codes and error messages.

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn verity(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .output()
        .expect("run verity")
}

fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("verity-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const MLP: &str = "models/digits_mlp.onnx";

/// Runs `verity infer run --model MODEL --input INPUT`, expecting exit code 1, no panic, and
/// `needle` in the error message.
fn run_fails_with(model: &str, input: &str, needle: &str) {
    let out = verity(&["infer", "run", "--model", model, "--input", input]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{model} {input}: {err}");
    assert!(err.contains(needle), "{model} {input}: {err}");
    assert!(!err.contains("panicked"), "{model} {input}: {err}");
}

#[test]
fn run_prints_outputs_model_id_and_trace() {
    let model = repo(MLP);
    let input = repo("models/samples/digit_0_label_7.json");
    let out = verity(&[
        "infer",
        "run",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--trace",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["outputs"][1]["name"], "label");
    assert_eq!(doc["outputs"][1]["data"][0], 7);
    assert_eq!(doc["trace"]["steps"], 7);
    assert_eq!(
        doc["trace"]["root"],
        "0xd1fcfb53927b7d7f97c2f7920689f1b7ce851377731142306476f71bee78c1a8"
    );
    let id = sha256sum_of(&std::fs::read(&model).unwrap());
    assert_eq!(doc["model_id"], id);

    // The .npy copy of the same sample, on 4 threads, gives the same trace root.
    let npy = repo("models/samples/digit_0_label_7.npy");
    let text = verity(&[
        "infer",
        "run",
        "--model",
        model.to_str().unwrap(),
        "--input",
        npy.to_str().unwrap(),
        "--trace",
        "--threads",
        "4",
    ]);
    assert!(text.status.success(), "{}", stderr(&text));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains(
            "trace_root  0xd1fcfb53927b7d7f97c2f7920689f1b7ce851377731142306476f71bee78c1a8"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("label: int64[1] [7]"), "{stdout}");
}

/// `model_id` is the SHA-256 of the file, computed here independently with the system tool.
fn sha256sum_of(bytes: &[u8]) -> String {
    let path = scratch("model-for-sha", bytes);
    let out = Command::new("sha256sum")
        .arg(&path)
        .output()
        .expect("sha256sum");
    format!(
        "0x{}",
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
    )
}

#[test]
fn bad_model_files_exit_1_with_a_reason() {
    let input = repo("models/samples/digit_0_label_7.json");
    let bytes = std::fs::read(repo(MLP)).unwrap();
    for (name, content, expect) in [
        ("truncated.onnx", &bytes[..bytes.len() / 2], "cannot load"),
        (
            "garbage.onnx",
            &b"\x00\x01garbage bytes, not protobuf\xff"[..],
            "not a valid ONNX model",
        ),
        ("empty.onnx", &b""[..], "not a valid ONNX model"),
    ] {
        let path = scratch(name, content);
        run_fails_with(path.to_str().unwrap(), input.to_str().unwrap(), expect);
    }
    run_fails_with(
        "/nonexistent/model.onnx",
        input.to_str().unwrap(),
        "cannot read /nonexistent/model.onnx",
    );
}

#[test]
fn bad_inputs_exit_1_with_a_reason() {
    let model = repo(MLP);
    let wrong_shape = scratch("short.json", b"[[1, 2, 3]]");
    run_fails_with(
        model.to_str().unwrap(),
        wrong_shape.to_str().unwrap(),
        r#"input "pixels": expected float32[N, 64], got float32 [1, 3]"#,
    );

    // An int64 .npy where the model takes float32.
    let header = "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 64), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let padded = format!("{header:<width$}\n", width = 128 - 10 - 1);
    npy.extend_from_slice(&(padded.len() as u16).to_le_bytes());
    npy.extend_from_slice(padded.as_bytes());
    npy.extend(std::iter::repeat_n(0u8, 64 * 8));
    let wrong_type = scratch("ints.npy", &npy);
    run_fails_with(
        model.to_str().unwrap(),
        wrong_type.to_str().unwrap(),
        "got int64 [1, 64]",
    );

    let not_json = scratch("junk.json", b"{not json");
    run_fails_with(
        model.to_str().unwrap(),
        not_json.to_str().unwrap(),
        "not valid JSON",
    );
}

#[test]
fn inspect_lists_ops_and_names_unsupported_ones() {
    let out = verity(&["infer", "inspect", "--model", repo(MLP).to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("input         pixels: float32[N, 64]"),
        "{text}"
    );
    assert!(text.contains("supported     yes"), "{text}");

    let out = verity(&[
        "infer",
        "inspect",
        "--model",
        repo("models/testdata/unsupported_op.onnx")
            .to_str()
            .unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Det x1  (unsupported)"), "{text}");
    assert!(
        text.contains(r#"node "det" (Det): operator Det is not supported"#),
        "{text}"
    );

    let input = scratch("x.json", b"[[[1, 2], [3, 4]]]");
    run_fails_with(
        repo("models/testdata/unsupported_op.onnx")
            .to_str()
            .unwrap(),
        input.to_str().unwrap(),
        r#"node "det" (Det): operator Det is not supported"#,
    );
}

/// `verity … | head`: a reader that goes away ends the command quietly, with no panic.
#[test]
fn a_closed_stdout_ends_quietly() {
    let model = repo(MLP);
    let input = repo("models/samples/digit_0_label_7.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(["infer", "run", "--model", model.to_str().unwrap()])
        .args(["--input", input.to_str().unwrap(), "--trace", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run verity");
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
    assert_eq!(stderr(&out), "");
}
