//! The committed baselines against `schemas/baseline.schema.json`, and their histograms
//! against the counts they summarise.

mod support;

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clawperf::harness::Baseline;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;

fn baseline_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for target in std::fs::read_dir(support::repo_path("baselines")).expect("baselines/ exists") {
        let target = target.unwrap().path();
        for file in std::fs::read_dir(&target).unwrap() {
            let path = file.unwrap().path();
            if path
                .extension()
                .is_some_and(|extension| extension == "json")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(support::repo_path("schemas/baseline.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("the schema is valid")
}

#[test]
fn committed_baselines_match_schema() {
    let validator = schema();
    let files = baseline_files();
    assert!(!files.is_empty(), "no committed baselines");
    for path in files {
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|error| format!("{} at {}", error, error.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
}

#[test]
fn schema_rejects_a_broken_baseline() {
    let validator = schema();
    let path = &baseline_files()[0];
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    value["repetitions"][0]["counters"]["input_tokens"] = serde_json::json!(-1);
    assert!(!validator.is_valid(&value));
}

#[test]
fn histograms_decode_to_turn_counts() {
    for path in baseline_files() {
        let baseline = Baseline::load(&path).unwrap().unwrap();
        for (index, repetition) in baseline.repetitions.iter().enumerate() {
            let Some(encoded) = repetition.histograms.get("ttft") else {
                continue;
            };
            let bytes = BASE64.decode(encoded).unwrap();
            let histogram: Histogram<u64> = Deserializer::new()
                .deserialize(&mut bytes.as_slice())
                .unwrap();
            let requests = repetition.counters["requests"] - repetition.counters["errors"];
            assert_eq!(
                histogram.len(),
                requests,
                "{} repetition {index}: TTFT samples",
                path.display()
            );
            let p50_ms = histogram.value_at_quantile(0.5) as f64 / 1000.0;
            let recorded = repetition.metrics["ttft.p50"];
            assert!(
                (p50_ms - recorded).abs() <= recorded * 0.002,
                "{} repetition {index}: histogram P50 {p50_ms} ms, recorded {recorded} ms",
                path.display()
            );
        }
    }
}
