//! The harness's settings, read once from the environment: the target, the baseline set,
//! blessing, output paths and the mock's slow-down knobs.

use std::path::{Path, PathBuf};

/// The destination of the scenarios' traffic.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// A fresh embedded mock server per repetition.
    Mock(MockKnobs),
    /// A real serving stack, from the `CLAWPERF_*` variables.
    Remote(RemoteTarget),
}

#[derive(Debug, Clone)]
pub struct RemoteTarget {
    pub endpoint: String,
    pub model: String,
    pub api_key: Option<String>,
    pub tokenizer: Option<PathBuf>,
    pub metrics_endpoint: Option<String>,
    pub backend: String,
}

/// Changes to every scenario's mock settings for one run, so that a regression can be
/// simulated without editing scenarios: `CLAWPERF_MOCK_TTFT_SCALE`,
/// `CLAWPERF_MOCK_TPOT_SCALE` and `CLAWPERF_MOCK_PREFIX_CACHING`.
#[derive(Debug, Clone, PartialEq)]
pub struct MockKnobs {
    pub ttft_scale: f64,
    pub tpot_scale: f64,
    /// `Some(false)` switches every scenario's prefix cache off.
    pub prefix_caching: Option<bool>,
}

impl Default for MockKnobs {
    fn default() -> Self {
        Self {
            ttft_scale: 1.0,
            tpot_scale: 1.0,
            prefix_caching: None,
        }
    }
}

/// Everything the harness reads from the environment.
#[derive(Debug, Clone)]
pub struct HarnessEnv {
    pub target: TargetSpec,
    /// The package whose scenarios run: `CARGO_MANIFEST_DIR`, else the working directory.
    pub package_dir: PathBuf,
    /// The baseline set: `baselines/<target_name>/`.
    pub target_name: String,
    /// `CLAWPERF_BLESS` is set to a true value.
    pub bless: bool,
    /// `CI` is set to anything but `0`, `false`, `no` or `off`, so no file under
    /// `baselines/` is written.
    pub ci: bool,
    pub baselines_dir: PathBuf,
    /// Directory of the JUnit file, result JSONs and Markdown summary.
    pub output_dir: PathBuf,
    pub junit_path: PathBuf,
    /// `$GITHUB_STEP_SUMMARY`, where the Markdown comparison is appended.
    pub step_summary: Option<PathBuf>,
    /// `NEXTEST_RUN_ID` when nextest runs one process per scenario.
    pub nextest_run_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("invalid {name} value {value:?}: {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(
        "CLAWPERF_ENDPOINT is set but CLAWPERF_MODEL is not: set CLAWPERF_MODEL to the served \
         model name"
    )]
    MissingModel,
    #[error(
        "CLAWPERF_ENDPOINT is set but CLAWPERF_TARGET is not: name the baseline set of this \
         stack (for example CLAWPERF_TARGET=vllm-h100), so that its results are not compared \
         with the mock's baselines"
    )]
    MissingTargetName,
    #[error(
        "CLAWPERF_TARGET={0:?} is not a valid directory name: use letters, digits, '-', '_' \
         and '.'"
    )]
    InvalidTargetName(String),
}

/// Environment variables, read through a function so that tests need not change the
/// process environment. Empty values count as unset.
struct Vars<F>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.is_empty())
    }

    /// Returns whether a flag variable is set to a true value: anything but `0`, `false`,
    /// `no` and `off` (any case).
    fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(|value| {
            !matches!(
                value.to_ascii_lowercase().as_str(),
                "0" | "false" | "no" | "off"
            )
        })
    }
}

fn scale(value: Option<String>, name: &'static str) -> Result<f64, EnvError> {
    let Some(value) = value else {
        return Ok(1.0);
    };
    match value.parse::<f64>() {
        Ok(scale) if scale.is_finite() && scale > 0.0 => Ok(scale),
        _ => Err(EnvError::Invalid {
            name,
            value,
            expected: "expected a factor > 0, such as 1.3",
        }),
    }
}

fn optional_bool(value: Option<String>, name: &'static str) -> Result<Option<bool>, EnvError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(Some(true)),
        "0" | "false" | "off" | "no" => Ok(Some(false)),
        _ => Err(EnvError::Invalid {
            name,
            value,
            expected: "expected 1 or 0",
        }),
    }
}

impl HarnessEnv {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let vars = Vars(lookup);
        let target = match vars.get("CLAWPERF_ENDPOINT") {
            Some(endpoint) => TargetSpec::Remote(RemoteTarget {
                endpoint,
                model: vars.get("CLAWPERF_MODEL").ok_or(EnvError::MissingModel)?,
                api_key: vars.get("CLAWPERF_API_KEY"),
                tokenizer: vars.get("CLAWPERF_TOKENIZER").map(PathBuf::from),
                metrics_endpoint: vars.get("CLAWPERF_METRICS_ENDPOINT"),
                backend: vars
                    .get("CLAWPERF_BACKEND")
                    .unwrap_or_else(|| "vllm".to_owned()),
            }),
            None => TargetSpec::Mock(MockKnobs {
                ttft_scale: scale(
                    vars.get("CLAWPERF_MOCK_TTFT_SCALE"),
                    "CLAWPERF_MOCK_TTFT_SCALE",
                )?,
                tpot_scale: scale(
                    vars.get("CLAWPERF_MOCK_TPOT_SCALE"),
                    "CLAWPERF_MOCK_TPOT_SCALE",
                )?,
                prefix_caching: optional_bool(
                    vars.get("CLAWPERF_MOCK_PREFIX_CACHING"),
                    "CLAWPERF_MOCK_PREFIX_CACHING",
                )?,
            }),
        };
        let target_name = match (vars.get("CLAWPERF_TARGET"), &target) {
            (Some(name), _) => name,
            (None, TargetSpec::Mock(_)) => "mock".to_owned(),
            (None, TargetSpec::Remote(_)) => return Err(EnvError::MissingTargetName),
        };
        let valid_name = target_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !target_name.starts_with('.');
        if !valid_name {
            return Err(EnvError::InvalidTargetName(target_name));
        }

        let package_dir = vars
            .get("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from("."));
        let baselines_dir = vars
            .get("CLAWPERF_BASELINES")
            .map(PathBuf::from)
            .unwrap_or_else(|| package_dir.join("baselines"))
            .join(&target_name);
        let output_dir =
            cargo_target_dir(vars.get("CARGO_TARGET_DIR"), &package_dir).join("clawperf");
        let junit_path = vars
            .get("CLAWPERF_JUNIT")
            .map(PathBuf::from)
            .unwrap_or_else(|| output_dir.join("junit.xml"));

        Ok(Self {
            target,
            package_dir,
            target_name,
            bless: vars.flag("CLAWPERF_BLESS"),
            ci: vars.flag("CI"),
            baselines_dir,
            output_dir,
            junit_path,
            step_summary: vars.get("GITHUB_STEP_SUMMARY").map(PathBuf::from),
            nextest_run_id: vars.get("NEXTEST_RUN_ID"),
        })
    }
}

/// Returns cargo's target directory: `CARGO_TARGET_DIR`, else the directory three levels
/// above this test binary (`<target>/<profile>/deps/<binary>`), else `<package>/target`.
fn cargo_target_dir(configured: Option<String>, package_dir: &Path) -> PathBuf {
    if let Some(dir) = configured {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            package_dir.join(dir)
        };
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let deps = exe.parent()?;
            (deps.file_name()? == "deps").then(|| deps.parent()?.parent().map(Path::to_path_buf))?
        })
        .unwrap_or_else(|| package_dir.join("target"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<HarnessEnv, EnvError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        HarnessEnv::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_use_the_mock() {
        let env = parse(&[("CARGO_MANIFEST_DIR", "/repo")]).unwrap();
        assert!(
            matches!(env.target, TargetSpec::Mock(ref knobs) if *knobs == MockKnobs::default())
        );
        assert_eq!(env.target_name, "mock");
        assert_eq!(env.baselines_dir, PathBuf::from("/repo/baselines/mock"));
        assert!(!env.bless);
        assert!(!env.ci);
    }

    #[test]
    fn ci_flag_values() {
        for (value, expected) in [
            ("true", true),
            ("1", true),
            ("0", false),
            ("false", false),
            ("FALSE", false),
            ("", false),
        ] {
            let env = parse(&[("CI", value)]).unwrap();
            assert_eq!(env.ci, expected, "CI={value:?}");
        }
    }

    #[test]
    fn endpoint_requires_model_and_target() {
        let missing_model = parse(&[("CLAWPERF_ENDPOINT", "http://127.0.0.1:8000/v1")]);
        assert!(matches!(missing_model, Err(EnvError::MissingModel)));
        let missing_target = parse(&[
            ("CLAWPERF_ENDPOINT", "http://127.0.0.1:8000/v1"),
            ("CLAWPERF_MODEL", "qwen3"),
        ]);
        assert!(matches!(missing_target, Err(EnvError::MissingTargetName)));
        let env = parse(&[
            ("CLAWPERF_ENDPOINT", "http://127.0.0.1:8000/v1"),
            ("CLAWPERF_MODEL", "qwen3"),
            ("CLAWPERF_TARGET", "vllm-h100"),
            ("CARGO_MANIFEST_DIR", "/repo"),
        ])
        .unwrap();
        assert!(matches!(env.target, TargetSpec::Remote(ref remote) if remote.backend == "vllm"));
        assert_eq!(
            env.baselines_dir,
            PathBuf::from("/repo/baselines/vllm-h100")
        );
    }

    #[test]
    fn invalid_values_are_rejected() {
        let cases = [
            ("CLAWPERF_MOCK_TTFT_SCALE", "fast"),
            ("CLAWPERF_MOCK_TTFT_SCALE", "0"),
            ("CLAWPERF_MOCK_TPOT_SCALE", "-1"),
            ("CLAWPERF_MOCK_PREFIX_CACHING", "maybe"),
            ("CLAWPERF_TARGET", "../mock"),
        ];
        for (name, value) in cases {
            let err = parse(&[(name, value)]).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(value), "{name}={value}: {message}");
        }
    }

    #[test]
    fn mock_knobs_are_read() {
        let env = parse(&[
            ("CLAWPERF_MOCK_TTFT_SCALE", "1.3"),
            ("CLAWPERF_MOCK_PREFIX_CACHING", "0"),
        ])
        .unwrap();
        let TargetSpec::Mock(knobs) = env.target else {
            panic!("expected the mock target");
        };
        assert_eq!(knobs.ttft_scale, 1.3);
        assert_eq!(knobs.tpot_scale, 1.0);
        assert_eq!(knobs.prefix_caching, Some(false));
    }
}
