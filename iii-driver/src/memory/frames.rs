//! The frame parser that follows what a connection's WebSocket layer reads, to know
//! what it holds (see the parent module).

/// Where the frame parser is in the byte stream the WebSocket layer reads.
#[derive(Debug, Default)]
pub(super) struct Frames {
    /// Header bytes of the frame being parsed (at most 14).
    header: [u8; 14],
    have: usize,
    /// Payload bytes left in the current frame; `None` while reading a header.
    remaining: Option<u64>,
    /// The current frame is a control frame.
    control: bool,
    /// The current frame ends its message.
    fin: bool,
    /// Bytes of the data message in progress: its payload so far and the header being
    /// read.
    message: usize,
    /// Bytes of the control frame in progress.
    control_bytes: usize,
    /// Bytes of the ping frames seen since the socket last took a byte.
    pub(super) pings: usize,
    /// Payload bytes of the data frame in progress (and its header while it is read).
    frame: usize,
    /// The largest data frame payload completed so far: the WebSocket layer reserves a
    /// whole frame in its read buffer and keeps that allocation for the connection's life, so
    /// it stays held (and charged) after the message is delivered.
    retained: usize,
}

impl Frames {
    /// What the connection holds: the message and control frame in progress, and the
    /// read buffer its largest frame left behind.
    pub(super) fn held(&self) -> usize {
        self.message
            .saturating_add(self.control_bytes)
            .saturating_add(self.retained)
    }

    /// Header length once its first two bytes are known.
    fn header_len(&self) -> usize {
        let extended = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + extended + mask
    }

    fn payload_len(&self) -> u64 {
        match self.header[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => {
                let mut bytes = [0; 8];
                bytes.copy_from_slice(&self.header[2..10]);
                u64::from_be_bytes(bytes)
            }
            n => u64::from(n),
        }
    }

    fn count(&mut self, n: usize) {
        if self.control {
            self.control_bytes = self.control_bytes.saturating_add(n);
        } else {
            self.message = self.message.saturating_add(n);
            self.frame = self.frame.saturating_add(n);
        }
    }

    /// Follows `data`, the next bytes handed to the WebSocket layer.
    #[inline]
    pub(super) fn observe(&mut self, data: &[u8]) {
        // The common case, kept short: a read inside a data frame's payload that does not
        // finish it.
        if let Some(left) = self.remaining {
            let len = data.len() as u64;
            if !self.control && len < left {
                self.message = self.message.saturating_add(data.len());
                self.frame = self.frame.saturating_add(data.len());
                self.remaining = Some(left - len);
                return;
            }
        }
        self.walk(data);
    }

    /// [`Self::observe`] for reads that cross a header or a frame's end.
    fn walk(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.remaining {
                None => {
                    let need = if self.have < 2 { 2 } else { self.header_len() };
                    let take = (need - self.have).min(data.len());
                    self.header[self.have..self.have + take].copy_from_slice(&data[..take]);
                    self.have += take;
                    data = &data[take..];
                    // The first byte says what the frame is.
                    self.control = self.header[0] & 0x08 != 0;
                    self.fin = self.header[0] & 0x80 != 0;
                    self.count(take);
                    if self.have >= 2 && self.have == self.header_len() {
                        // The WebSocket layer parses the header and keeps only the
                        // payload: a message of many fragments holds no header bytes.
                        if !self.control {
                            self.message = self.message.saturating_sub(self.have);
                            self.frame = self.frame.saturating_sub(self.have);
                        }
                        self.remaining = Some(self.payload_len());
                        self.have = 0;
                    }
                }
                Some(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                    self.count(take);
                    data = &data[take..];
                    self.remaining = Some(left - take as u64);
                }
            }
            if self.remaining == Some(0) {
                self.remaining = None;
                self.frame_done();
            }
        }
    }

    /// The current frame is complete: what it finished is the WebSocket layer's to
    /// deliver now, no longer in progress.
    fn frame_done(&mut self) {
        if self.control {
            if self.header[0] & 0x0f == 0x9 {
                self.pings = self.pings.saturating_add(self.control_bytes);
            }
            self.control_bytes = 0;
            self.control = false;
        } else {
            self.retained = self.retained.max(self.frame);
            self.frame = 0;
            if self.fin {
                self.message = 0;
            }
        }
    }
}
