//! Benchmarks of the client's hot paths: SSE parsing (reported in MB/s), generating an exact
//! 128k-token context with the Qwen3 tokenizer, counting the next turn's prompt of a 128k-token
//! conversation, and recording latencies into the histograms.
//!
//! Run with `cargo bench --bench client`. The Qwen3 tokenizer is fetched on first use like in
//! the tests (see `tests/support/mod.rs`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use clawperf::client::SseParser;
use clawperf::content::ContentGenerator;
use clawperf::openai::{ChatMessage, Role};
use clawperf::prompt_counter::PromptCounter;
use clawperf::stats::LatencyHistogram;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Token chunks in the benchmarked stream; a 1000-token reply in vLLM's chunk layout.
const STREAM_TOKENS: usize = 1000;
/// Tokens of the generated context.
const CONTEXT_TOKENS: usize = 128_000;
/// Latencies recorded per iteration of the histogram benchmark.
const LATENCIES: u64 = 10_000;

/// Builds a vLLM-style stream: a role chunk, one chunk per token, a finish chunk, a usage
/// chunk and `[DONE]`, with the fields vLLM 0.x sends.
fn vllm_stream(tokens: usize) -> Vec<u8> {
    let prefix = r#"{"id":"chatcmpl-b7d1c3a1e4f54b2a9c0d","object":"chat.completion.chunk","created":1764800000,"model":"Qwen/Qwen3-8B","choices":[{"index":0,"delta":"#;
    let mut stream = String::new();
    stream.push_str(&format!(
        "data: {prefix}{{\"role\":\"assistant\",\"content\":\"\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
    ));
    for index in 0..tokens {
        stream.push_str(&format!(
            "data: {prefix}{{\"content\":\" word{index}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
        ));
    }
    stream.push_str(&format!(
        "data: {prefix}{{}},\"logprobs\":null,\"finish_reason\":\"length\"}}]}}\n\n"
    ));
    stream.push_str(&format!(
        "data: {{\"id\":\"chatcmpl-b7d1c3a1e4f54b2a9c0d\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{{\"prompt_tokens\":20000,\"total_tokens\":{},\"completion_tokens\":{tokens}}}}}\n\n",
        20000 + tokens
    ));
    stream.push_str("data: [DONE]\n\n");
    stream.into_bytes()
}

/// Splits `stream` into one read per event, the way the events arrive from a streaming server.
fn reads_per_event(stream: &[u8]) -> Vec<&[u8]> {
    let mut reads = Vec::new();
    let mut start = 0;
    while let Some(offset) = stream[start..].windows(2).position(|pair| pair == b"\n\n") {
        let end = start + offset + 2;
        reads.push(&stream[start..end]);
        start = end;
    }
    reads
}

fn parse(reads: &[&[u8]]) -> usize {
    let mut parser = SseParser::new();
    let mut data_bytes = 0;
    for (index, read) in reads.iter().enumerate() {
        parser
            .feed(read, index, |event| {
                data_bytes += event.data.len();
                Ok::<(), Infallible>(())
            })
            .unwrap();
    }
    data_bytes
}

fn sse_parsing(criterion: &mut Criterion) {
    let stream = vllm_stream(STREAM_TOKENS);
    let per_event = reads_per_event(&stream);
    let per_4k: Vec<&[u8]> = stream.chunks(4096).collect();

    let mut group = criterion.benchmark_group("sse_parse");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("one_read_per_event", |bencher| {
        bencher.iter(|| parse(black_box(&per_event)))
    });
    group.bench_function("4k_reads", |bencher| {
        bencher.iter(|| parse(black_box(&per_4k)))
    });
    group.finish();
}

fn context_generation(criterion: &mut Criterion) {
    let generator = ContentGenerator::new(support::qwen3_tokenizer()).expect("Qwen3 unit pool");

    let mut group = criterion.benchmark_group("content");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(CONTEXT_TOKENS as u64));
    group.bench_function("generate_128k_tokens_qwen3", |bencher| {
        let mut rng = StdRng::seed_from_u64(1);
        bencher.iter(|| {
            generator
                .generate(&mut rng, black_box(CONTEXT_TOKENS))
                .unwrap()
        })
    });
    group.finish();
}

/// Counts the prompt of a turn that adds a 1000-token input to a 128k-token conversation, once
/// by encoding the whole rendered prompt and once from where it differs from the previous turn.
fn prompt_counting(criterion: &mut Criterion) {
    let tokenizer = support::qwen3_tokenizer();
    let generator = ContentGenerator::new(tokenizer.clone()).expect("Qwen3 unit pool");
    let mut rng = StdRng::seed_from_u64(2);
    let mut generate = |tokens| generator.generate(&mut rng, tokens).unwrap();

    let mut messages = vec![ChatMessage::new(Role::System, generate(100_000))];
    for _ in 0..14 {
        messages.push(ChatMessage::new(Role::User, generate(1000)));
        messages.push(ChatMessage::new(Role::Assistant, generate(1000)));
    }
    messages.push(ChatMessage::new(Role::User, generate(1000)));
    let mut primed = PromptCounter::new(tokenizer.clone());
    primed.count_chat(&messages).unwrap();
    messages.push(ChatMessage::new(Role::Assistant, generate(1000)));
    messages.push(ChatMessage::new(Role::User, generate(1000)));

    let mut group = criterion.benchmark_group("prompt_count");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("next_turn_of_128k_full_encode", |bencher| {
        bencher.iter(|| tokenizer.count_chat(black_box(&messages)).unwrap())
    });
    group.bench_function("next_turn_of_128k_incremental", |bencher| {
        bencher.iter_batched_ref(
            || primed.clone(),
            |counter| counter.count_chat(black_box(&messages)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn histogram_recording(criterion: &mut Criterion) {
    // Latencies from 1 ms to about 10 s, spread over the histogram's buckets.
    let latencies: Vec<Duration> = (0..LATENCIES)
        .map(|index| Duration::from_micros(1000 + index * index % 10_000_000))
        .collect();

    let mut group = criterion.benchmark_group("histogram");
    group.throughput(Throughput::Elements(LATENCIES));
    group.bench_function("record_10k_latencies", |bencher| {
        bencher.iter_batched_ref(
            LatencyHistogram::new,
            |histogram| {
                for latency in &latencies {
                    histogram.record(*latency);
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    sse_parsing,
    context_generation,
    prompt_counting,
    histogram_recording
);
criterion_main!(benches);
