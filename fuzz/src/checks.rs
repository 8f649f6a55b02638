//! Properties the fuzz targets check on every input. The test suite runs the same checks on
//! seeded random inputs (`tests/fuzz_smoke.rs`), so a property that breaks shows up there too.

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use clawperf::client::{SseParser, UnterminatedTail};
use clawperf::prom::{Backend, Exposition, Sample};

/// Largest input fed to the SSE parser one byte at a time, which costs one call per byte.
const MAX_BYTE_BY_BYTE: usize = 4096;

/// An event with owned strings and its stamp (the index of the read that started it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    event_type: String,
    data: String,
    last_event_id: String,
    stamp: usize,
}

type Tail = Option<(String, String)>;

fn parse_reads(reads: &[&[u8]]) -> (Vec<Event>, Tail) {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    for (index, read) in reads.iter().enumerate() {
        let fed = parser.feed(read, index, |event| {
            events.push(Event {
                event_type: event.event_type.to_owned(),
                data: event.data.to_owned(),
                last_event_id: event.last_event_id.to_owned(),
                stamp: event.stamp,
            });
            Ok::<(), Infallible>(())
        });
        if let Err(never) = fed {
            match never {}
        }
    }
    let tail = parser.finish().map(
        |UnterminatedTail {
             data, partial_line, ..
         }| (data, partial_line),
    );
    (events, tail)
}

fn without_stamps(events: &[Event]) -> Vec<(&str, &str, &str)> {
    events
        .iter()
        .map(|event| {
            (
                event.event_type.as_str(),
                event.data.as_str(),
                event.last_event_id.as_str(),
            )
        })
        .collect()
}

/// Checks the SSE parser on `data`: the first byte picks a cut point and the rest is the
/// stream. The events and the unterminated tail must not depend on how the stream is cut into
/// reads, stamps must never decrease, and no field value may contain a line terminator other
/// than the `\n` that joins `data` lines.
pub fn check_sse_parser(data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let (whole, whole_tail) = parse_reads(&[stream]);

    for event in &whole {
        assert!(!event.data.contains('\r'), "data contains CR: {event:?}");
        assert!(
            !event.event_type.contains(['\r', '\n']),
            "event type contains a line terminator: {event:?}"
        );
        assert!(
            !event.last_event_id.contains(['\r', '\n', '\0']),
            "id contains a line terminator or NUL: {event:?}"
        );
        assert_eq!(event.stamp, 0, "one read gives one stamp");
    }

    let cut = usize::from(selector) * stream.len() / 255;
    let (first, second) = stream.split_at(cut);
    let (split, split_tail) = parse_reads(&[first, second]);
    assert_eq!(
        without_stamps(&split),
        without_stamps(&whole),
        "events differ when cut at byte {cut}"
    );
    assert_eq!(
        split_tail, whole_tail,
        "tail differs when cut at byte {cut}"
    );
    assert!(
        split.windows(2).all(|pair| pair[0].stamp <= pair[1].stamp),
        "stamps decrease when cut at byte {cut}"
    );

    if stream.len() <= MAX_BYTE_BY_BYTE {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let (by_byte, by_byte_tail) = parse_reads(&bytes);
        assert_eq!(
            without_stamps(&by_byte),
            without_stamps(&whole),
            "events differ when fed byte by byte"
        );
        assert_eq!(
            by_byte_tail, whole_tail,
            "tail differs when fed byte by byte"
        );
    }
}

/// Checks the Prometheus parser on `data` decoded as UTF-8 (invalid bytes replaced): neither
/// mode panics, a lenient parse of a strictly valid text skips nothing and yields the same
/// samples, and every backend's name map reads any exposition.
pub fn check_prometheus_parser(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let strict = Exposition::parse(&text);
    let lenient = Exposition::parse_lenient(&text);

    if let Ok(strict) = &strict {
        assert!(
            lenient.skipped_lines().is_empty(),
            "lenient parse skipped lines of a valid text: {:?}",
            lenient.skipped_lines()
        );
        assert_eq!(
            sample_keys(strict.samples()),
            sample_keys(lenient.samples()),
            "strict and lenient samples differ"
        );
    } else {
        assert!(
            !lenient.skipped_lines().is_empty(),
            "strict parse failed but lenient parse skipped nothing"
        );
    }

    for backend in [Backend::Vllm, Backend::Sglang, Backend::Mindie] {
        let snapshot = backend.snapshot(&lenient, Duration::ZERO, SystemTime::UNIX_EPOCH);
        let _ = snapshot.has_any_metric();
    }
}

/// A sample's name, labels, value bits and timestamp bits.
type SampleKey<'a> = (&'a str, &'a [(String, String)], u64, Option<u64>);

/// Returns the samples with their values as bits, so that NaN values compare equal to
/// themselves.
fn sample_keys(samples: &[Sample]) -> Vec<SampleKey<'_>> {
    samples
        .iter()
        .map(|sample| {
            (
                sample.name.as_str(),
                sample.labels.as_slice(),
                sample.value.to_bits(),
                sample.timestamp.map(f64::to_bits),
            )
        })
        .collect()
}
