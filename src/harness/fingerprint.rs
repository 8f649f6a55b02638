//! The environment fingerprint stored with a baseline: versions, machine and target.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::baseline::Environment;
use super::target::RepetitionTarget;

/// How long the `/version` and `/v1/models` look-ups may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Collects the fingerprint; the target's model and version are asked from the target and
/// are absent when it does not serve them.
pub async fn collect(package_dir: &Path, target: &RepetitionTarget) -> Environment {
    Environment {
        clawperf_version: env!("CARGO_PKG_VERSION").to_owned(),
        git_revision: git_revision(package_dir),
        cpu_model: cpu_model(),
        cpu_count: std::thread::available_parallelism().map_or(1, usize::from),
        os: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        target_model: served_model(target).await,
        server_version: server_version(target).await,
    }
}

fn git_revision(package_dir: &Path) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(package_dir)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|revision| !revision.is_empty())
}

fn cpu_model() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

async fn get_json(target: &RepetitionTarget, url: url::Url) -> Option<serde_json::Value> {
    let mut request = target.http.get(url).timeout(LOOKUP_TIMEOUT);
    if let Some(key) = &target.api_key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.ok()?.error_for_status().ok()?;
    response.json().await.ok()
}

async fn served_model(target: &RepetitionTarget) -> Option<String> {
    let url = target.base_url.join("models").ok()?;
    let models = get_json(target, url).await?;
    let ids: Vec<&str> = models
        .get("data")?
        .as_array()?
        .iter()
        .filter_map(|model| model.get("id")?.as_str())
        .collect();
    ids.iter()
        .find(|id| **id == target.model)
        .or_else(|| ids.first())
        .map(|id| (*id).to_owned())
}

async fn server_version(target: &RepetitionTarget) -> Option<String> {
    // `/version` sits beside `/v1` on vLLM and SGLang.
    let url = target.base_url.join("../version").ok()?;
    let version = get_json(target, url).await?;
    version.get("version")?.as_str().map(str::to_owned)
}
