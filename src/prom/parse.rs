//! The Prometheus text exposition parser (format 0.0.4, plus the OpenMetrics details that real
//! servers emit), which builds an [`Exposition`].
//!
//! Accepted input:
//! - `# HELP name text` and `# TYPE name type`. Any other `#` line is a comment and ignored.
//! - Samples `name{label="value",...} value [timestamp]`, with `\\`, `\"` and `\n` escapes in
//!   label values, blanks around label tokens and a trailing comma in the label set.
//! - Values as Go's `strconv.ParseFloat` writes them: integers, floats, exponents, `NaN`, `+Inf`
//!   and `-Inf`.
//! - Blank lines, leading whitespace and CRLF line endings.
//! - OpenMetrics: the `# EOF` terminator (only blank lines may follow it), the extra metric types
//!   and exemplars (` # {labels} value`), which are ignored.
//!
//! Not accepted: quoted UTF-8 metric names (`{"my.metric"}`, Prometheus 3), which are reported as
//! malformed lines.
//!
//! Strict or lenient: [`Exposition::parse`] stops at the first malformed line and returns a
//! [`ParseError`] naming it, which suits tests and files. [`Exposition::parse_lenient`] skips
//! malformed lines and keeps them in [`Exposition::skipped_lines`], because a poller that scrapes a
//! live server for an hour must not lose every later snapshot over one odd line.

use std::collections::hash_map::Entry;
use std::fmt;

use super::exposition::{Exposition, MetricType, Sample};

/// Maximum number of characters of a malformed line quoted in a [`ParseError`] message. The
/// error keeps the whole line in [`ParseError::line`].
const MAX_QUOTED_CHARS: usize = 160;

/// The reason a line is malformed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("invalid metric name")]
    InvalidMetricName,
    #[error("invalid label name")]
    InvalidLabelName,
    #[error("expected `{0}`")]
    Expected(char),
    #[error("label value has no closing quote")]
    UnterminatedLabelValue,
    #[error("invalid escape `\\{0}` in label value (only \\\\, \\\" and \\n are allowed)")]
    InvalidEscape(char),
    #[error("duplicate label `{0}`")]
    DuplicateLabel(String),
    #[error("missing sample value")]
    MissingValue,
    #[error("invalid sample value `{0}`")]
    InvalidValue(String),
    #[error("invalid timestamp `{0}`")]
    InvalidTimestamp(String),
    #[error("unexpected text `{0}` after the sample")]
    TrailingText(String),
    #[error("missing metric type")]
    MissingType,
    #[error(
        "invalid metric type `{0}` (expected counter, gauge, histogram, summary, untyped, \
         unknown, info, stateset or gaugehistogram)"
    )]
    InvalidType(String),
    #[error("second TYPE line for `{0}`")]
    DuplicateType(String),
    #[error("second HELP line for `{0}`")]
    DuplicateHelp(String),
    #[error("content after `# EOF`")]
    ContentAfterEof,
}

/// A malformed line of an exposition, with its 1-based line number and content.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "malformed exposition line {line_number}: {reason}: `{}`",
    QuotedLine(line)
)]
pub struct ParseError {
    pub line_number: usize,
    /// The whole line, without its line ending.
    pub line: String,
    pub reason: LineError,
}

/// Formats a line for an error message, cut to [`MAX_QUOTED_CHARS`] characters.
struct QuotedLine<'a>(&'a str);

impl fmt::Display for QuotedLine<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(MAX_QUOTED_CHARS) {
            Some((cut, _)) => write!(formatter, "{}...", &self.0[..cut]),
            None => formatter.write_str(self.0),
        }
    }
}

impl Exposition {
    /// Parses `text` and fails on the first malformed line.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut parser = Parser::default();
        for (line_number, line) in content_lines(text) {
            parser.parse_line(line_number, line)?;
        }
        Ok(parser.exposition)
    }

    /// Parses `text`, skipping malformed lines. The skipped lines and their errors are kept in
    /// [`Exposition::skipped_lines`], in input order.
    pub fn parse_lenient(text: &str) -> Self {
        let mut parser = Parser::default();
        let mut skipped_lines = Vec::new();
        for (line_number, line) in content_lines(text) {
            if let Err(error) = parser.parse_line(line_number, line) {
                skipped_lines.push(error);
            }
        }
        Exposition {
            skipped_lines,
            ..parser.exposition
        }
    }
}

/// Yields the 1-based number and content of every non-blank line, without CR or LF.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.trim().is_empty())
}

/// The state of one parse: what was read so far and whether `# EOF` was seen.
#[derive(Default)]
struct Parser {
    exposition: Exposition,
    eof_seen: bool,
}

impl Parser {
    /// Parses one non-blank line into the exposition.
    fn parse_line(&mut self, line_number: usize, line: &str) -> Result<(), ParseError> {
        let fail = |reason| ParseError {
            line_number,
            line: line.to_owned(),
            reason,
        };
        if self.eof_seen {
            return Err(fail(LineError::ContentAfterEof));
        }

        let trimmed = line.trim_start();
        match trimmed.strip_prefix('#') {
            Some(comment) => self.parse_comment(comment).map_err(fail),
            None => {
                let sample = parse_sample(trimmed).map_err(fail)?;
                self.exposition.samples.push(sample);
                Ok(())
            }
        }
    }

    fn parse_comment(&mut self, comment: &str) -> Result<(), LineError> {
        let mut cursor = Cursor::new(comment);
        cursor.skip_blanks();
        let keyword = cursor.take_while(|byte| !is_blank(byte));
        match keyword {
            "EOF" if cursor.rest().trim().is_empty() => {
                self.eof_seen = true;
                Ok(())
            }
            "HELP" => {
                cursor.skip_blanks();
                let family = cursor.take_metric_name()?;
                let text = unescape_help(cursor.rest().strip_prefix([' ', '\t']).unwrap_or(""));
                match self.exposition.help.entry(family.to_owned()) {
                    Entry::Occupied(_) => Err(LineError::DuplicateHelp(family.to_owned())),
                    Entry::Vacant(slot) => {
                        slot.insert(text);
                        Ok(())
                    }
                }
            }
            "TYPE" => {
                cursor.skip_blanks();
                let family = cursor.take_metric_name()?;
                cursor.skip_blanks();
                let type_name = cursor.rest().trim_end();
                if type_name.is_empty() {
                    return Err(LineError::MissingType);
                }
                let metric_type = parse_metric_type(type_name)?;
                match self.exposition.types.entry(family.to_owned()) {
                    Entry::Occupied(_) => Err(LineError::DuplicateType(family.to_owned())),
                    Entry::Vacant(slot) => {
                        slot.insert(metric_type);
                        Ok(())
                    }
                }
            }
            // Any other comment, including the `# SOURCE:` notes in clawperf's test data.
            _ => Ok(()),
        }
    }
}

/// Parses the type word of a `# TYPE` line.
fn parse_metric_type(text: &str) -> Result<MetricType, LineError> {
    match text {
        "counter" => Ok(MetricType::Counter),
        "gauge" => Ok(MetricType::Gauge),
        "histogram" => Ok(MetricType::Histogram),
        "summary" => Ok(MetricType::Summary),
        "untyped" => Ok(MetricType::Untyped),
        "unknown" => Ok(MetricType::Unknown),
        "info" => Ok(MetricType::Info),
        "stateset" => Ok(MetricType::StateSet),
        "gaugehistogram" => Ok(MetricType::GaugeHistogram),
        other => Err(LineError::InvalidType(other.to_owned())),
    }
}

fn parse_sample(line: &str) -> Result<Sample, LineError> {
    let mut cursor = Cursor::new(line);
    let name = cursor.take_metric_name()?.to_owned();
    cursor.skip_blanks();
    let labels = if cursor.eat(b'{') {
        parse_labels(&mut cursor)?
    } else {
        Vec::new()
    };

    cursor.skip_blanks();
    let value_text = cursor.take_while(|byte| !is_blank(byte));
    if value_text.is_empty() {
        return Err(LineError::MissingValue);
    }
    let value = value_text
        .parse::<f64>()
        .map_err(|_| LineError::InvalidValue(value_text.to_owned()))?;

    cursor.skip_blanks();
    let mut timestamp = None;
    if !cursor.rest().is_empty() && !cursor.rest().starts_with('#') {
        let timestamp_text = cursor.take_while(|byte| !is_blank(byte));
        let parsed = timestamp_text
            .parse::<f64>()
            .ok()
            .filter(|value| value.is_finite())
            .ok_or_else(|| LineError::InvalidTimestamp(timestamp_text.to_owned()))?;
        timestamp = Some(parsed);
        cursor.skip_blanks();
    }

    // An OpenMetrics exemplar (` # {trace_id="..."} 1.0`) may follow, and is ignored.
    let rest = cursor.rest().trim_end();
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err(LineError::TrailingText(rest.to_owned()));
    }

    Ok(Sample {
        name,
        labels,
        value,
        timestamp,
    })
}

/// Parses the label set after its opening `{`, up to and including the closing `}`.
fn parse_labels(cursor: &mut Cursor<'_>) -> Result<Vec<(String, String)>, LineError> {
    let mut labels: Vec<(String, String)> = Vec::new();
    loop {
        cursor.skip_blanks();
        if cursor.eat(b'}') {
            return Ok(labels);
        }

        let name = cursor.take_label_name()?;
        cursor.skip_blanks();
        cursor.expect(b'=')?;
        cursor.skip_blanks();
        cursor.expect(b'"')?;
        let value = parse_label_value(cursor)?;
        if labels.iter().any(|(existing, _)| existing == name) {
            return Err(LineError::DuplicateLabel(name.to_owned()));
        }
        labels.push((name.to_owned(), value));

        cursor.skip_blanks();
        if cursor.eat(b'}') {
            return Ok(labels);
        }
        cursor.expect(b',')?;
    }
}

/// Parses a label value after its opening quote, up to and including the closing quote.
fn parse_label_value(cursor: &mut Cursor<'_>) -> Result<String, LineError> {
    let mut value = String::new();
    loop {
        let plain = cursor.take_while(|byte| byte != b'"' && byte != b'\\');
        value.push_str(plain);
        match cursor.next_char() {
            Some('"') => return Ok(value),
            Some('\\') => match cursor.next_char() {
                Some('\\') => value.push('\\'),
                Some('"') => value.push('"'),
                Some('n') => value.push('\n'),
                Some(other) => return Err(LineError::InvalidEscape(other)),
                None => return Err(LineError::UnterminatedLabelValue),
            },
            _ => return Err(LineError::UnterminatedLabelValue),
        }
    }
}

/// Resolves the `\\` and `\n` escapes of a HELP text. Other backslashes stay as written, as in
/// the Prometheus Go parser.
fn unescape_help(text: &str) -> String {
    let mut help = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(next) = chars.next() {
        if next != '\\' {
            help.push(next);
            continue;
        }
        match chars.next() {
            Some('\\') => help.push('\\'),
            Some('n') => help.push('\n'),
            Some(other) => {
                help.push('\\');
                help.push(other);
            }
            None => help.push('\\'),
        }
    }
    help
}

fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// A read position in one line. Every delimiter it looks for is ASCII, so slicing at its
/// positions always lands on UTF-8 character boundaries.
struct Cursor<'a> {
    line: &'a str,
    position: usize,
}

impl<'a> Cursor<'a> {
    fn new(line: &'a str) -> Self {
        Self { line, position: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.line[self.position..]
    }

    fn peek(&self) -> Option<u8> {
        self.line.as_bytes().get(self.position).copied()
    }

    fn next_char(&mut self) -> Option<char> {
        let next = self.rest().chars().next()?;
        self.position += next.len_utf8();
        Some(next)
    }

    fn eat(&mut self, expected: u8) -> bool {
        let found = self.peek() == Some(expected);
        if found {
            self.position += 1;
        }
        found
    }

    fn expect(&mut self, expected: u8) -> Result<(), LineError> {
        if self.eat(expected) {
            Ok(())
        } else {
            Err(LineError::Expected(char::from(expected)))
        }
    }

    fn skip_blanks(&mut self) {
        self.take_while(is_blank);
    }

    /// Advances over bytes while `predicate` holds. Each caller's predicate either accepts every
    /// non-ASCII byte or none, so the slice never splits a UTF-8 character.
    fn take_while(&mut self, predicate: impl Fn(u8) -> bool) -> &'a str {
        let start = self.position;
        while let Some(byte) = self.peek()
            && predicate(byte)
        {
            self.position += 1;
        }
        &self.line[start..self.position]
    }

    /// Takes a name matching `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    fn take_metric_name(&mut self) -> Result<&'a str, LineError> {
        let name =
            self.take_while(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':');
        if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
            return Err(LineError::InvalidMetricName);
        }
        Ok(name)
    }

    /// Takes a name matching `[a-zA-Z_][a-zA-Z0-9_]*`.
    fn take_label_name(&mut self) -> Result<&'a str, LineError> {
        let name = self.take_while(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
        if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
            return Err(LineError::InvalidLabelName);
        }
        Ok(name)
    }
}
