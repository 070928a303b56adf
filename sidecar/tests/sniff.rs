//! The sniffer against recorded requests: every directory `tests/fixtures/sniff/*/` with a
//! `cases.toml` holds raw HTTP/1.1 requests (`<name>.http`, head and body exactly as a
//! client sent them) and the intent each must produce. `hand/` is written for INTENTS.md and
//! protocols.md row by row (`hand/generate.py`); `captured/` holds real SDK bytes.
//!
//! Each case also runs through the fuzz oracle (`sniff::fuzz::sniff_checked`): the invariants
//! on text and flags, and prefixes of the body as incomplete bodies.
//!
//! Manifest: `[[case]] file, source, protocol, operation, target`, optional `flags` (any of
//! `mismatch`, `streaming`, `batch`, `partial`), `sniff_limit` (the body is cut there, as the
//! look-ahead would) and `complete = false` (the body is only a prefix).
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

// Loads the raw request captures under tests/fixtures/sniff/.
#[path = "common/capture.rs"]
mod capture;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aimux_sidecar::sniff::{SniffRequest, fuzz};
use aimux_wire::{Intent, IntentFlags};
use serde::Deserialize;

use capture::Capture;

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    file: String,
    #[serde(default)]
    source: String,
    protocol: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    flags: Vec<String>,
    sniff_limit: Option<usize>,
    complete: Option<bool>,
}

const FLAG_NAMES: [(&str, IntentFlags); 4] = [
    ("mismatch", IntentFlags::HEADER_BODY_MISMATCH),
    ("streaming", IntentFlags::STREAMING),
    ("batch", IntentFlags::BATCH),
    ("partial", IntentFlags::PARTIAL),
];

fn flag_names(flags: IntentFlags) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = FLAG_NAMES
        .iter()
        .filter(|(_, f)| flags.contains(*f))
        .map(|(n, _)| (*n).to_owned())
        .collect();
    let known = FLAG_NAMES.iter().fold(0, |acc, (_, f)| acc | f.0);
    if flags.0 & !known != 0 {
        names.insert(format!("{:#x}", flags.0 & !known));
    }
    names
}

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sniff");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.join("cases.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn show(i: &Intent) -> String {
    let flags: Vec<String> = flag_names(i.flags).into_iter().collect();
    format!(
        "{} {:?} {:?} [{}]",
        i.protocol,
        i.operation,
        i.target,
        flags.join(",")
    )
}

/// Runs one case; `Err` says how it failed.
fn run(dir: &Path, case: &Case) -> Result<(), String> {
    let capture = Capture::load(&dir.join(&case.file))?;
    let limit = case.sniff_limit.unwrap_or(usize::MAX);
    let body = capture.body.get(..limit).unwrap_or(&capture.body);
    let complete = case.complete.unwrap_or(true) && body.len() == capture.body.len();
    let req = SniffRequest {
        method: &capture.method,
        path: &capture.target,
        headers: &capture.headers,
        body,
        complete,
    };
    let got = std::panic::catch_unwind(|| fuzz::sniff_checked(&req))
        .map_err(|p| format!("panicked: {:?}", p.downcast_ref::<String>()))?;
    let want_flags: BTreeSet<String> = case.flags.iter().cloned().collect();
    let ok = got.protocol.as_str() == case.protocol
        && got.operation == case.operation
        && got.target == case.target
        && flag_names(got.flags) == want_flags;
    if ok {
        Ok(())
    } else {
        let want: Vec<&str> = case.flags.iter().map(String::as_str).collect();
        Err(format!(
            "want {} {:?} {:?} [{}]\n      got  {}",
            case.protocol,
            case.operation,
            case.target,
            want.join(","),
            show(&got)
        ))
    }
}

#[test]
fn every_fixture_gives_its_intent() {
    let mut failures = Vec::new();
    let mut total = 0;
    for dir in fixture_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(dir.join("cases.toml")).unwrap();
        let manifest: Manifest =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{name}/cases.toml: {e}"));
        let mut listed = BTreeSet::new();
        for case in &manifest.case {
            total += 1;
            listed.insert(case.file.clone());
            if let Err(why) = run(&dir, case) {
                failures.push(format!(
                    "{name}/{} ({}):\n      {why}",
                    case.file, case.source
                ));
            }
        }
        // A capture nobody checks is a test that silently does not exist.
        for entry in std::fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().file_name().to_string_lossy().into_owned();
            if file.ends_with(".http") && !listed.contains(&file) {
                failures.push(format!("{name}/{file}: not listed in cases.toml"));
            }
        }
    }
    assert!(total > 0, "no fixtures found");
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    eprintln!("{total} sniffer cases passed");
}

#[test]
fn fixtures_sniff_the_same_split_at_every_chunk_boundary_the_look_ahead_may_see() {
    // The look-ahead stops a chunked body at the end of its first JSON value; any prefix that
    // contains that value must give the same intent as the whole body.
    for dir in fixture_dirs() {
        let text = std::fs::read_to_string(dir.join("cases.toml")).unwrap();
        let manifest: Manifest = toml::from_str(&text).unwrap();
        for case in manifest.case.iter().filter(|c| c.sniff_limit.is_none()) {
            let Ok(capture) = Capture::load(&dir.join(&case.file)) else {
                continue;
            };
            let Some(end) = capture::first_value_end(&capture.body) else {
                continue;
            };
            let mut req = SniffRequest {
                method: &capture.method,
                path: &capture.target,
                headers: &capture.headers,
                body: &capture.body,
                complete: case.complete.unwrap_or(true),
            };
            let whole = fuzz::sniff_checked(&req);
            req.body = capture.body.get(..end).unwrap();
            req.complete = false;
            let cut = fuzz::sniff_checked(&req);
            assert_eq!(show(&cut), show(&whole), "{}/{}", dir.display(), case.file);
        }
    }
}

#[test]
fn the_fuzz_target_entry_agrees_on_every_fixture() {
    // `fuzz/fuzz_targets/sniff.rs` calls `sniff_bytes`; feed it each fixture in its layout
    // (method byte, target, header lines, empty line, body) so the target cannot rot.
    const METHODS: [&str; 8] = [
        "GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "TRACE",
    ];
    let mut fed = 0;
    for dir in fixture_dirs() {
        let text = std::fs::read_to_string(dir.join("cases.toml")).unwrap();
        let manifest: Manifest = toml::from_str(&text).unwrap();
        for case in manifest.case.iter().filter(|c| c.sniff_limit.is_none()) {
            let capture = Capture::load(&dir.join(&case.file)).unwrap();
            let Some(m) = METHODS.iter().position(|m| *m == capture.method.as_str()) else {
                continue;
            };
            let complete = case.complete.unwrap_or(true);
            let mut data = vec![u8::try_from(m).unwrap() | if complete { 0 } else { 8 }];
            data.extend_from_slice(capture.target.as_bytes());
            data.push(b'\n');
            for (name, value) in &capture.headers {
                data.extend_from_slice(name.as_str().as_bytes());
                data.extend_from_slice(b": ");
                data.extend_from_slice(value.as_bytes());
                data.push(b'\n');
            }
            data.push(b'\n');
            data.extend_from_slice(&capture.body);
            let direct = fuzz::sniff_checked(&SniffRequest {
                method: &capture.method,
                path: &capture.target,
                headers: &capture.headers,
                body: &capture.body,
                complete,
            });
            assert_eq!(
                show(&fuzz::sniff_bytes(&data)),
                show(&direct),
                "{}/{}",
                dir.display(),
                case.file
            );
            fed += 1;
        }
    }
    assert!(fed > 0);
}
