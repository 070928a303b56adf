//! `aimux check` as a user runs it: the real binary, real files.
// Test helpers outside `#[test]` functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn aimux(args: &[&str], cwd: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aimux"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    (
        code,
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn repository_mesh_file_is_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (code, stdout, stderr) = aimux(&["check", "--config", "mesh.toml"], root.as_ref());
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("mesh.toml: valid"), "{stdout}");
    assert!(stdout.contains("127.0.0.1:15002 → tools"), "{stdout}");
}

#[test]
fn without_a_file_the_embedded_default_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = aimux(&["check"], dir.path());
    assert_eq!(code, 0);
    assert!(
        stdout.contains("<embedded default mesh.toml>: valid"),
        "{stdout}"
    );
}

#[test]
fn mistakes_are_printed_with_file_line_column_and_hint_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let bad = include_str!("../mesh.toml")
        .replace("admin = ", "admn = ")
        .replace("to = \"echo\"", "to = \"ehco\"");
    std::fs::write(dir.path().join("bad.toml"), &bad).unwrap();
    let (code, _, stderr) = aimux(&["check", "--config", "bad.toml"], dir.path());
    assert_eq!(code, 1, "{stderr}");
    let admn_line = bad.lines().position(|l| l.starts_with("admn")).unwrap() + 1;
    assert!(
        stderr.contains(&format!("--> bad.toml:{admn_line}:1")),
        "{stderr}"
    );
    assert!(stderr.contains("hint: did you mean `admin`?"), "{stderr}");
    assert!(stderr.contains("no service named `ehco`"), "{stderr}");
    assert!(
        stderr.trim_end().ends_with("bad.toml: 2 mistakes"),
        "{stderr}"
    );
}

#[test]
fn unreadable_file_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = aimux(&["check", "--config", "missing.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot read mesh file missing.toml"),
        "{stderr}"
    );
    assert!(stderr.contains("--config"), "{stderr}");
}

#[test]
fn a_reader_that_leaves_early_is_not_a_crash() {
    // Like `aimux check | head -c 0`: stdout is a pipe whose reader is already gone, so
    // every write fails with EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_aimux"))
        .args(["check", "--config", "mesh.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn a_listener_that_does_not_carry_what_its_service_takes_is_a_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let bad = include_str!("../mesh.toml").replace(
        "{ listen = \"127.0.0.1:15002\", service = \"tools\" },",
        "{ listen = \"127.0.0.1:15002\", service = \"tools\", protocol = \"tcp\" },",
    );
    assert_ne!(
        bad,
        include_str!("../mesh.toml"),
        "the listener to change exists"
    );
    std::fs::write(dir.path().join("bad.toml"), &bad).unwrap();
    let (code, _, stderr) = aimux(&["check", "--config", "bad.toml"], dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "error: listener 127.0.0.1:15002 of agent `demo-agent` is raw TCP (protocol = \
             \"tcp\"), but service `tools` takes HTTP requests (builtin:mcp-tools)"
        ),
        "{stderr}"
    );
    let line = bad
        .lines()
        .position(|l| l.contains("\"tools\", protocol"))
        .unwrap()
        + 1;
    let column = bad.lines().nth(line - 1).unwrap().find("\"tcp\"").unwrap() + 1;
    assert!(
        stderr.contains(&format!("--> bad.toml:{line}:{column}")),
        "{stderr}"
    );
    assert!(stderr.contains("remove protocol = \"tcp\""), "{stderr}");
    assert!(
        stderr.trim_end().ends_with("bad.toml: 1 mistake"),
        "{stderr}"
    );
}
