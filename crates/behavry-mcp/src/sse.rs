//! Server-Sent Events framing.

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

/// Incremental SSE decoder: feed bytes as they arrive, take events out.
/// Tolerates CRLF, comments, empty `data:` (priming events) and events
/// split across chunks. A single event may not exceed `max_event` bytes.
pub struct Decoder {
    buf: Vec<u8>,
    current: Event,
    has_data: bool,
    max_event: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("SSE event larger than {0} bytes")]
pub struct TooLarge(pub usize);

impl Decoder {
    pub fn new(max_event: usize) -> Self {
        Self {
            buf: Vec::new(),
            current: Event::default(),
            has_data: false,
            max_event,
        }
    }

    /// Adds bytes and returns the events they complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, TooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + pos;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            if line.is_empty() {
                if self.has_data || self.current.event.is_some() {
                    out.push(std::mem::take(&mut self.current));
                }
                self.current = Event::default();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "event" => self.current.event = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                "id" => self.current.id = Some(value.to_string()),
                _ => {}
            }
            if self.current.data.len() > self.max_event {
                return Err(TooLarge(self.max_event));
            }
        }
        self.buf.drain(..start);
        if self.buf.len() > self.max_event {
            return Err(TooLarge(self.max_event));
        }
        Ok(out)
    }
}

/// Formats one event. `data` may contain newlines; each becomes its own
/// `data:` line.
pub fn format_event(event: Option<&str>, id: Option<&str>, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(e) = event {
        out.push_str("event: ");
        out.push_str(e);
        out.push('\n');
    }
    if let Some(i) = id {
        out.push_str("id: ");
        out.push_str(i);
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_split_and_multiline_events() {
        let mut d = Decoder::new(1 << 20);
        let mut events = d
            .feed(b"id: 1\ndata: \n\n: comment\r\nevent: message\r\ndata: {\"a\"")
            .unwrap();
        assert_eq!(
            events.len(),
            1,
            "the priming event with empty data is dispatched"
        );
        assert_eq!(events[0].data, "");
        events = d.feed(b":1}\r\ndata: x\r\n\r\n").unwrap();
        assert_eq!(
            events,
            vec![Event {
                event: Some("message".into()),
                data: "{\"a\":1}\nx".into(),
                id: None
            }]
        );
    }

    #[test]
    fn round_trips_and_bounds_size() {
        let text = format_event(Some("endpoint"), Some("7"), "line1\nline2");
        let events = Decoder::new(1024).feed(text.as_bytes()).unwrap();
        assert_eq!(events[0].data, "line1\nline2");
        assert_eq!(events[0].id.as_deref(), Some("7"));
        let mut small = Decoder::new(8);
        assert!(small.feed(b"data: 0123456789\n").is_err());
    }
}
