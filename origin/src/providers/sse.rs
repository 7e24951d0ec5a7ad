//! Incremental server-sent-events parsing: bytes in (any chunking), `data:` payloads out.

use bytes::{Buf, Bytes, BytesMut};

#[derive(Default)]
pub struct SseParser {
    buf: BytesMut,
    data: Vec<u8>,
    has_data: bool,
}

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event's data (multi-line data joined with `\n`), if one is buffered.
    pub fn next_data(&mut self) -> Option<Bytes> {
        loop {
            let nl = self.buf.iter().position(|b| *b == b'\n')?;
            let mut line = self.buf.split_to(nl + 1);
            line.truncate(nl);
            if line.last() == Some(&b'\r') {
                line.truncate(nl - 1);
            }
            if line.is_empty() {
                if self.has_data {
                    self.has_data = false;
                    return Some(Bytes::from(std::mem::take(&mut self.data)));
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix(b"data:") {
                let rest = rest.strip_prefix(b" ").unwrap_or(rest);
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(rest);
                self.has_data = true;
            }
            // Comments (":"), event:, id:, retry: carry nothing the chat stream needs.
        }
    }

    /// At end of body: an event not closed by a blank line still counts.
    pub fn finish(&mut self) -> Option<Bytes> {
        if !self.buf.is_empty() {
            self.buf.extend_from_slice(b"\n\n");
            if let Some(d) = self.next_data() {
                return Some(d);
            }
        }
        self.buf.advance(self.buf.len());
        if self.has_data {
            self.has_data = false;
            return Some(Bytes::from(std::mem::take(&mut self.data)));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_any_chunking() {
        let stream = b"data: {\"a\":1}\n\n: keep-alive\n\ndata: {\"b\":2}\r\n\r\ndata: [DONE]\n\n";
        for split in 1..stream.len() {
            let mut p = SseParser::default();
            let mut out = Vec::new();
            for chunk in stream.chunks(split) {
                p.push(chunk);
                while let Some(d) = p.next_data() {
                    out.push(d);
                }
            }
            assert_eq!(
                out,
                vec![
                    Bytes::from_static(b"{\"a\":1}"),
                    Bytes::from_static(b"{\"b\":2}"),
                    Bytes::from_static(b"[DONE]")
                ],
                "split {split}"
            );
        }
    }

    #[test]
    fn unterminated_last_event_is_kept() {
        let mut p = SseParser::default();
        p.push(b"data: x");
        assert_eq!(p.next_data(), None);
        assert_eq!(p.finish(), Some(Bytes::from_static(b"x")));
    }
}
