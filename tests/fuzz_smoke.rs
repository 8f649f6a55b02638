//! A short, seeded run of the fuzz targets' checks (`fuzz/src/checks.rs`) without libFuzzer,
//! so the test suite catches a broken property on stable Rust. The inputs are the recorded
//! streams and expositions under `tests/data/`, a bounded number of random mutations of them,
//! and random bytes. Long coverage-guided runs use `cargo fuzz` (see the README).

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Mutated inputs per seed file.
const MUTATIONS_PER_SEED: usize = 300;
/// Inputs of random bytes.
const RANDOM_INPUTS: usize = 500;

fn seed_files(directory: &str) -> Vec<Vec<u8>> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join(directory);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "txt"))
        .map(|path| std::fs::read(&path).unwrap())
        .collect();
    seeds.sort();
    assert!(
        !seeds.is_empty(),
        "no seed files in {}",
        directory.display()
    );
    seeds
}

/// Applies a few random byte-level edits: overwrite, insert, delete or duplicate a range.
fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    const INTERESTING: &[u8] = b"\r\n:\0 {}\"\\#=,.e+-9\xEF\xBB\xBF\xE4\xB8\x96";
    let mut input = seed.to_vec();
    for _ in 0..rng.random_range(1..=8) {
        let position = rng.random_range(0..=input.len());
        match rng.random_range(0..4) {
            0 if position < input.len() => {
                input[position] = INTERESTING[rng.random_range(0..INTERESTING.len())];
            }
            1 => input.insert(
                position,
                INTERESTING[rng.random_range(0..INTERESTING.len())],
            ),
            2 if position < input.len() => {
                let end = (position + rng.random_range(1..64)).min(input.len());
                input.drain(position..end);
            }
            _ => {
                let end = (position + rng.random_range(1..64)).min(input.len());
                let copy = input[position..end].to_vec();
                let at = rng.random_range(0..=input.len());
                input.splice(at..at, copy);
            }
        }
    }
    input
}

fn random_bytes(rng: &mut StdRng) -> Vec<u8> {
    let length = rng.random_range(0..512);
    (0..length).map(|_| rng.random()).collect()
}

/// Runs `check` on every seed, on mutations of the seeds and on random bytes. The first byte
/// of each input is the cut selector of the SSE check, so seeds get one prepended.
fn smoke(seeds: &[Vec<u8>], check: fn(&[u8])) {
    let mut rng = StdRng::seed_from_u64(0x5EED);
    for seed in seeds {
        let mut input = vec![rng.random()];
        input.extend_from_slice(seed);
        check(&input);
        for _ in 0..MUTATIONS_PER_SEED {
            check(&mutate(&mut rng, &input));
        }
    }
    for _ in 0..RANDOM_INPUTS {
        check(&random_bytes(&mut rng));
    }
}

#[test]
fn sse_parser_smoke() {
    let mut seeds = seed_files("tests/data/sse");
    seeds.push(b"\xEF\xBB\xBF: ping\r\n\r\nevent: error\rid: 7\ndata: a\ndata:b\r\rdata".to_vec());
    smoke(&seeds, checks::check_sse_parser);
}

#[test]
fn prometheus_parser_smoke() {
    smoke(
        &seed_files("tests/data/metrics"),
        checks::check_prometheus_parser,
    );
}
