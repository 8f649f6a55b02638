//! An incremental Server-Sent Events parser that stamps each event with the read that started it.
//!
//! The parser follows the rules of the WHATWG HTML standard, section "Parsing an event stream":
//!
//! - One leading UTF-8 BOM is skipped.
//! - Lines end with CRLF, LF or a lone CR. A blank line dispatches the pending event.
//! - A line starting with `:` is a comment.
//! - In `field: value`, one space after the colon is removed. Unknown fields are ignored.
//! - `data` lines are joined with `\n`. An event without a `data` line is not dispatched.
//! - An `id` value containing NUL is ignored. The last ID persists across events.
//! - A `retry` value is kept only when it is all ASCII digits.
//!
//! Field values are decoded as UTF-8 with replacement characters for invalid bytes. That gives
//! the same text as decoding the whole stream, because line terminators are ASCII.
//!
//! Input may be cut anywhere: inside a UTF-8 character, between `\r` and `\n`, inside the BOM.
//! Only an unterminated line is buffered. Dispatched events borrow the parser's buffers, which
//! are reused, so parsing allocates only while a buffer grows to the largest event seen.
//!
//! Timing: every `feed` call passes a stamp (the arrival instant of that read). An event carries
//! the stamp of the read that delivered the first byte of its first field line. Blank lines and
//! comments never start an event, so a `: ping` keep-alive received before the data does not make
//! the event look earlier than it was.
//!
//! At end of input the spec discards an event that was not closed by a blank line. `finish`
//! returns such a tail instead, so that the caller can tell a cut-off stream from a complete one.

use std::borrow::Cow;

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// One dispatched event. The strings borrow the parser's buffers and are valid until the next
/// call into the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a, S> {
    /// The `event` field, or `"message"` when the event had none.
    pub event_type: &'a str,
    /// The `data` lines joined with `\n`.
    pub data: &'a str,
    /// The most recent `id` field of this or an earlier event, or `""`.
    pub last_event_id: &'a str,
    /// The stamp of the read that delivered the first byte of the event's first field line.
    pub stamp: S,
}

/// The part of the input after the last dispatched event, when end of input came before the
/// blank line that would have dispatched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnterminatedTail<S> {
    /// The `data` lines that were complete, joined with `\n`.
    pub data: String,
    /// The last line, which had no line terminator (empty when the input ended after one).
    pub partial_line: String,
    /// The stamp of the read that delivered the first byte of the tail.
    pub stamp: S,
}

/// An incremental event-stream parser. `S` is the stamp type, in practice an `Instant`.
#[derive(Debug, Clone)]
pub struct SseParser<S> {
    /// Bytes of the current line that have no terminator yet.
    line: Vec<u8>,
    /// The stamp of the read that delivered the first byte of `line`.
    line_stamp: Option<S>,
    /// The previous input ended with `\r`, so a `\n` at the start of the next input belongs to
    /// the same line terminator.
    after_cr: bool,
    /// How many bytes of a leading BOM have been matched, or `None` once the start of the
    /// stream is past.
    bom_matched: Option<usize>,
    event: PendingEvent<S>,
}

#[derive(Debug, Clone)]
struct PendingEvent<S> {
    event_type: String,
    data: String,
    last_event_id: String,
    retry: Option<u64>,
    /// The stamp of the first field line, `None` while no field line has been seen.
    stamp: Option<S>,
}

impl<S: Copy> Default for SseParser<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Copy> SseParser<S> {
    pub fn new() -> Self {
        Self {
            line: Vec::new(),
            line_stamp: None,
            after_cr: false,
            bom_matched: Some(0),
            event: PendingEvent {
                event_type: String::new(),
                data: String::new(),
                last_event_id: String::new(),
                retry: None,
                stamp: None,
            },
        }
    }

    /// Parses one read of the stream and calls `on_event` for every event it completes.
    ///
    /// An error from `on_event` stops parsing and is returned. The rest of `chunk` is then left
    /// unparsed, so the parser must not be fed again afterwards.
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        stamp: S,
        mut on_event: impl FnMut(SseEvent<'_, S>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = chunk;
        while let Some(matched) = self.bom_matched {
            let Some((&byte, tail)) = rest.split_first() else {
                return Ok(());
            };
            if byte == BOM[matched] {
                rest = tail;
                self.bom_matched = (matched + 1 < BOM.len()).then_some(matched + 1);
            } else {
                // The stream started with part of a BOM only: those bytes are content.
                self.bom_matched = None;
                self.feed_lines(&BOM[..matched], stamp, &mut on_event)?;
            }
        }
        self.feed_lines(rest, stamp, &mut on_event)
    }

    /// Returns the last `retry` value the stream sent, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.event.retry
    }

    /// Ends the input and returns the unterminated tail, if there is one. A trailing comment
    /// line or trailing blank lines are not a tail.
    pub fn finish(self) -> Option<UnterminatedTail<S>> {
        let partial_is_field = self.line.first().is_some_and(|&byte| byte != b':');
        let stamp = self.event.stamp.or(if partial_is_field {
            self.line_stamp
        } else {
            None
        })?;

        let mut data = self.event.data;
        if data.ends_with('\n') {
            data.pop();
        }
        let partial_line = if partial_is_field {
            String::from_utf8_lossy(&self.line).into_owned()
        } else {
            String::new()
        };
        Some(UnterminatedTail {
            data,
            partial_line,
            stamp,
        })
    }

    fn feed_lines<E>(
        &mut self,
        bytes: &[u8],
        stamp: S,
        on_event: &mut impl FnMut(SseEvent<'_, S>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = bytes;
        if self.after_cr {
            let Some(&first) = rest.first() else {
                return Ok(());
            };
            self.after_cr = false;
            if first == b'\n' {
                rest = &rest[1..];
            }
        }

        while let Some(end) = rest.iter().position(|&byte| byte == b'\n' || byte == b'\r') {
            if self.line.is_empty() {
                self.event.process_line(&rest[..end], stamp, on_event)?;
            } else {
                let line_stamp = self.line_stamp.unwrap_or(stamp);
                self.line.extend_from_slice(&rest[..end]);
                self.event.process_line(&self.line, line_stamp, on_event)?;
                self.line.clear();
            }
            self.line_stamp = None;

            let after_terminator = end + 1;
            rest = if rest[end] == b'\n' {
                &rest[after_terminator..]
            } else {
                match rest.get(after_terminator) {
                    Some(b'\n') => &rest[after_terminator + 1..],
                    Some(_) => &rest[after_terminator..],
                    None => {
                        self.after_cr = true;
                        &[]
                    }
                }
            };
        }

        if !rest.is_empty() {
            if self.line.is_empty() {
                self.line_stamp = Some(stamp);
            }
            self.line.extend_from_slice(rest);
        }
        Ok(())
    }
}

impl<S: Copy> PendingEvent<S> {
    fn process_line<E>(
        &mut self,
        line: &[u8],
        stamp: S,
        on_event: &mut impl FnMut(SseEvent<'_, S>) -> Result<(), E>,
    ) -> Result<(), E> {
        if line.is_empty() {
            return self.dispatch(on_event);
        }
        if line[0] == b':' {
            return Ok(());
        }

        let (field, value) = match line.iter().position(|&byte| byte == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        self.stamp.get_or_insert(stamp);

        match field {
            b"data" => {
                self.data.push_str(&decode(value));
                self.data.push('\n');
            }
            b"event" => {
                self.event_type.clear();
                self.event_type.push_str(&decode(value));
            }
            b"id" if !value.contains(&0) => {
                self.last_event_id.clear();
                self.last_event_id.push_str(&decode(value));
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // All ASCII digits, so only an overflow can fail the parse; such a value is
                // ignored like any other invalid one.
                if let Ok(milliseconds) = decode(value).parse() {
                    self.retry = Some(milliseconds);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch<E>(
        &mut self,
        on_event: &mut impl FnMut(SseEvent<'_, S>) -> Result<(), E>,
    ) -> Result<(), E> {
        let stamp = self.stamp.take();
        if self.data.ends_with('\n') {
            self.data.pop();
        } else {
            // No data line since the last dispatch: the spec drops the event.
            self.event_type.clear();
            return Ok(());
        }

        let result = match stamp {
            Some(stamp) => on_event(SseEvent {
                event_type: if self.event_type.is_empty() {
                    "message"
                } else {
                    &self.event_type
                },
                data: &self.data,
                last_event_id: &self.last_event_id,
                stamp,
            }),
            None => Ok(()),
        };
        self.data.clear();
        self.event_type.clear();
        result
    }
}

fn decode(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// An event with owned strings, for comparing parser output.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Owned {
        event_type: String,
        data: String,
        id: String,
        stamp: usize,
    }

    fn owned(event_type: &str, data: &str, id: &str, stamp: usize) -> Owned {
        Owned {
            event_type: event_type.to_owned(),
            data: data.to_owned(),
            id: id.to_owned(),
            stamp,
        }
    }

    /// Feeds `reads` in order, stamping each with its index.
    fn parse_reads(reads: &[&[u8]]) -> (Vec<Owned>, Option<UnterminatedTail<usize>>) {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for (index, read) in reads.iter().enumerate() {
            parser
                .feed(read, index, |event| {
                    events.push(owned(
                        event.event_type,
                        event.data,
                        event.last_event_id,
                        event.stamp,
                    ));
                    Ok::<(), Infallible>(())
                })
                .unwrap();
        }
        (events, parser.finish())
    }

    fn parse_one(input: &str) -> Vec<Owned> {
        let (events, tail) = parse_reads(&[input.as_bytes()]);
        assert_eq!(tail, None, "unexpected tail for {input:?}");
        events
    }

    #[test]
    fn field_rules() {
        let cases: &[(&str, &str, Vec<Owned>)] = &[
            (
                "data with space",
                "data: a\n\n",
                vec![owned("message", "a", "", 0)],
            ),
            (
                "data without space",
                "data:a\n\n",
                vec![owned("message", "a", "", 0)],
            ),
            (
                "only one space removed",
                "data:  a\n\n",
                vec![owned("message", " a", "", 0)],
            ),
            (
                "multi-line data",
                "data: a\ndata: b\n\n",
                vec![owned("message", "a\nb", "", 0)],
            ),
            (
                "empty data line",
                "data\n\n",
                vec![owned("message", "", "", 0)],
            ),
            (
                "empty data then text",
                "data:\ndata: b\n\n",
                vec![owned("message", "\nb", "", 0)],
            ),
            (
                "event type",
                "event: error\ndata: x\n\n",
                vec![owned("error", "x", "", 0)],
            ),
            (
                "event type resets",
                "event: e\ndata: 1\n\ndata: 2\n\n",
                vec![owned("e", "1", "", 0), owned("message", "2", "", 0)],
            ),
            (
                "comment ignored",
                ": ping\ndata: x\n\n",
                vec![owned("message", "x", "", 0)],
            ),
            ("keep-alive alone", ": ping\n\n", vec![]),
            ("no data no event", "event: x\n\n", vec![]),
            (
                "unknown field ignored",
                "foo: bar\ndata: x\n\n",
                vec![owned("message", "x", "", 0)],
            ),
            (
                "id persists",
                "id: 7\ndata: a\n\ndata: b\n\n",
                vec![owned("message", "a", "7", 0), owned("message", "b", "7", 0)],
            ),
            (
                "id with nul ignored",
                "id: 7\ndata: a\n\nid: 8\0\ndata: b\n\n",
                vec![owned("message", "a", "7", 0), owned("message", "b", "7", 0)],
            ),
            (
                "empty id resets",
                "id: 7\ndata: a\n\nid\ndata: b\n\n",
                vec![owned("message", "a", "7", 0), owned("message", "b", "", 0)],
            ),
            (
                "value keeps colons",
                "data: {\"a\":1}\n\n",
                vec![owned("message", "{\"a\":1}", "", 0)],
            ),
            (
                "crlf",
                "data: a\r\n\r\ndata: b\r\n\r\n",
                vec![owned("message", "a", "", 0), owned("message", "b", "", 0)],
            ),
            (
                "lone cr",
                "data: a\r\rdata: b\r\r",
                vec![owned("message", "a", "", 0), owned("message", "b", "", 0)],
            ),
            (
                "mixed endings",
                "data: a\r\ndata: b\rdata: c\n\r\n",
                vec![owned("message", "a\nb\nc", "", 0)],
            ),
            (
                "bom skipped",
                "\u{feff}data: a\n\n",
                vec![owned("message", "a", "", 0)],
            ),
            ("second bom kept", "\u{feff}\u{feff}data: a\n\n", vec![]),
            (
                "extra blank lines",
                "\n\n\ndata: a\n\n\n\n",
                vec![owned("message", "a", "", 0)],
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(&parse_one(input), expected, "case {name}");
        }
    }

    #[test]
    fn retry_rules() {
        let cases = [
            ("digits", "retry: 1500\n\n", Some(1500)),
            ("not digits", "retry: 15s\n\n", None),
            ("empty", "retry:\n\n", None),
            ("overflow", "retry: 99999999999999999999999\n\n", None),
        ];
        for (name, input, expected) in cases {
            let mut parser = SseParser::new();
            parser
                .feed(input.as_bytes(), 0, |_| Ok::<(), Infallible>(()))
                .unwrap();
            assert_eq!(parser.retry(), expected, "case {name}");
        }
    }

    #[test]
    fn crlf_split_between_cr_and_lf() {
        let (events, tail) = parse_reads(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(
            events,
            vec![owned("message", "a", "", 0), owned("message", "b", "", 2)]
        );
        assert_eq!(tail, None);
    }

    #[test]
    fn partial_bom_is_content() {
        let (events, _) = parse_reads(&[b"\xEF\xBB", b"data: a\n\n"]);
        assert_eq!(
            events,
            vec![],
            "a line starting with a broken BOM is an unknown field"
        );
        let (events, _) = parse_reads(&[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"]);
        assert_eq!(events, vec![owned("message", "a", "", 2)]);
    }

    #[test]
    fn stamp_is_first_field_byte() {
        let reads: &[&[u8]] = &[
            b": ping\n\n",
            b": still thinking\n",
            b"da",
            b"ta: a\n",
            b"data: b\n",
            b"\n",
        ];
        let (events, _) = parse_reads(reads);
        assert_eq!(events, vec![owned("message", "a\nb", "", 2)]);
    }

    #[test]
    fn stamp_of_event_after_dispatch_in_same_read() {
        let (events, _) = parse_reads(&[b"data: a\n\nda", b"ta: b\n\n"]);
        assert_eq!(
            events,
            vec![owned("message", "a", "", 0), owned("message", "b", "", 0)]
        );
    }

    #[test]
    fn invalid_utf8_replaced() {
        let (events, _) = parse_reads(&[b"data: a\xFFb\n\n"]);
        assert_eq!(events, vec![owned("message", "a\u{FFFD}b", "", 0)]);
    }

    #[test]
    fn tail_cases() {
        type Case = (
            &'static str,
            &'static [&'static [u8]],
            Option<UnterminatedTail<usize>>,
        );
        let cases: &[Case] = &[
            ("complete", &[b"data: a\n\n"], None),
            ("nothing", &[], None),
            ("trailing comment", &[b"data: a\n\n: bye\n"], None),
            ("partial comment", &[b"data: a\n\n: by"], None),
            (
                "missing blank line",
                &[b"data: a\n\n", b"data: [DONE]\n"],
                Some(UnterminatedTail {
                    data: "[DONE]".to_owned(),
                    partial_line: String::new(),
                    stamp: 1,
                }),
            ),
            (
                "cut inside line",
                &[b"data: a\n\n", b"data: {\"cho"],
                Some(UnterminatedTail {
                    data: String::new(),
                    partial_line: "data: {\"cho".to_owned(),
                    stamp: 1,
                }),
            ),
            (
                "complete line then partial",
                &[b"data: x\n", b"dat"],
                Some(UnterminatedTail {
                    data: "x".to_owned(),
                    partial_line: "dat".to_owned(),
                    stamp: 0,
                }),
            ),
            (
                "event field only",
                &[b"event: error\n"],
                Some(UnterminatedTail {
                    data: String::new(),
                    partial_line: String::new(),
                    stamp: 0,
                }),
            ),
        ];
        for (name, reads, expected) in cases {
            let (_, tail) = parse_reads(reads);
            assert_eq!(&tail, expected, "case {name}");
        }
    }

    #[test]
    fn callback_error_stops_parsing() {
        let mut parser = SseParser::new();
        let mut seen = Vec::new();
        let result = parser.feed(b"data: 1\n\ndata: 2\n\n", 0, |event| {
            seen.push(event.data.to_owned());
            Err("stop")
        });
        assert_eq!(result, Err("stop"));
        assert_eq!(seen, vec!["1".to_owned()]);
    }
}
