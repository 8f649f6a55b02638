//! Compile-fail tests of `#[clawperf::scenario]`: each misuse in `tests/ui/` must fail to
//! compile with the message in its `.stderr` file, pointing at the offending tokens.
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test --test scenario_macro`.

#[test]
fn scenario_misuse_fails_to_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
