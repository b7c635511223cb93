//! The next frame: control replies first (never held behind data), then
//! the newest value of every dirty subscription, unless the client's read
//! window holds data back.

use super::Session;
use crate::flow::{AckWindow, Gate};
use crate::metrics::Metrics;
use crate::outbox::{append_data, frame_header, Data, HEADER_ROOM};
use std::collections::VecDeque;
use tokio::time::Instant;

/// Control replies waiting for the next frame. Boxed and absent while
/// empty: an idle session holds 8 bytes for it, not a 32-byte `VecDeque`.
// The box is the point: it keeps the inline size at 8 bytes.
#[allow(clippy::box_collection)]
pub(super) struct ControlQueue(Option<Box<VecDeque<String>>>);

impl ControlQueue {
    pub(super) const fn empty() -> Self {
        ControlQueue(None)
    }

    pub(super) fn push_back(&mut self, msg: String) {
        self.0.get_or_insert_with(Default::default).push_back(msg);
    }

    pub(super) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.len())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn front(&self) -> Option<&String> {
        self.0.as_ref().and_then(|q| q.front())
    }

    pub(super) fn pop_front(&mut self) -> Option<String> {
        self.0.as_mut().and_then(|q| q.pop_front())
    }

    pub(super) fn take_all(&mut self) -> Vec<String> {
        self.0
            .take()
            .map(|q| q.into_iter().collect())
            .unwrap_or_default()
    }

    pub(super) fn release_if_empty(&mut self) {
        if self.is_empty() {
            self.0 = None;
        }
    }
}

impl Session {
    /// Whether read-window flow control is on (`read_lag_ms` > 0); off,
    /// the task never takes the parked state's lock for it.
    pub(super) fn flow_on(&self) -> bool {
        self.cfg().read_lag_ms != 0
    }

    /// Whether data may go now (the client's read window is not full and,
    /// in ack mode, its frames are acknowledged); counts a hold once.
    pub(super) fn data_gate(&mut self) -> bool {
        if self.acking {
            let held = self.handle.direct.lock().ack.gate(Instant::now());
            if let Err(first) = held {
                if first {
                    self.ctx.metrics.ack_window_holds.inc();
                }
                return false;
            }
        }
        if !self.flow_on() {
            return true;
        }
        let gate = self.handle.direct.lock().window.gate(Instant::now());
        match gate {
            Gate::Open => true,
            Gate::Held => false,
            Gate::HeldNow => {
                self.ctx.metrics.read_window_holds.inc();
                false
            }
            // The client's lag spaces its frames: the timer wakes the
            // task when the next may go.
            Gate::Paced(at, first) => {
                if first {
                    self.ctx.metrics.read_window_paced.inc();
                }
                self.due = Some(self.due.map_or(at, |d| d.min(at)));
                false
            }
        }
    }

    /// Starts (or stops, with 0) ack mode with `window` frames.
    fn start_flow(&mut self, window: u8) {
        self.handle.direct.lock().ack = AckWindow::start(window);
        let on = window > 0;
        if on != self.acking {
            let g = &self.ctx.metrics.ack_mode_sessions;
            if on {
                g.inc();
            } else {
                g.dec();
            }
        }
        self.acking = on;
    }

    /// Builds the next frame: pending control replies first, then the
    /// newest value of every dirty subscription. Returns its bytes, where
    /// the frame starts in them, and its oldest live quote's `gw_ts`
    /// (`i64::MAX`: none); `None` if there is nothing to send (everything
    /// held back by `max_hz`).
    pub(super) fn build_frame(&mut self) -> Option<(Vec<u8>, usize, i64)> {
        let ctx = self.ctx.clone();
        let m = &ctx.metrics;
        let max = ctx.config.max_frame_bytes;
        // Sized like the previous frame, so a steady stream of similar
        // frames does not regrow the buffer several times each.
        let mut out = String::with_capacity(self.frame_hint as usize);
        // Room for the WebSocket header, written in front once the length
        // is known (see `frame_header`).
        out.push_str(HEADER_ROOM);
        out.push('[');
        let mut n_ctrl = 0u64;
        while let Some(c) = self.control.front() {
            if n_ctrl > 0 && out.len() + c.len() > max {
                break;
            }
            if n_ctrl > 0 {
                out.push(',');
            }
            out.push_str(c);
            self.control.pop_front();
            n_ctrl += 1;
        }
        // Idle sessions hold no queue (replies are occasional).
        self.control.release_if_empty();
        // The frame that carries a `flow` reply starts its window: frames
        // are counted from the next one on.
        let (before_flow, window) = self.flow_reply;
        let starts_flow = before_flow > 0 && n_ctrl >= u64::from(before_flow);
        if before_flow > 0 && !starts_flow {
            self.flow_reply.0 = before_flow - n_ctrl as u16;
        }
        let mut data = Data::default();
        if self.dirty && out.len() < max && self.data_gate() {
            self.dirty = false;
            self.handle.clear();
            data = append_data(
                ctx.fanout.cache(),
                &mut self.subs,
                &mut self.scan_from,
                &mut out,
                n_ctrl > 0,
                max,
                Instant::now(),
                None,
            );
            if data.more {
                self.dirty = true;
            }
            if let Some(d) = data.due {
                self.due = Some(self.due.map_or(d, |x| x.min(d)));
            }
        }
        if n_ctrl + data.n == 0 {
            return None;
        }
        out.push(']');
        self.frame_hint = out.len().clamp(256, max + 64) as u32;
        count_frame(m, &out, n_ctrl, &data);
        self.frames = self.frames.wrapping_add(1);
        if starts_flow {
            self.flow_reply = (0, 0);
            self.start_flow(window);
        } else if self.acking {
            self.handle.direct.lock().ack.sent_frame();
        }
        let mut bytes = out.into_bytes();
        let start = frame_header(&mut bytes);
        Some((bytes, start, data.oldest))
    }
}

/// Counts a finished frame (`out` holds `HEADER_ROOM` and the payload).
fn count_frame(m: &Metrics, out: &str, n_ctrl: u64, d: &Data) {
    d.count_trades(m);
    if d.conflated > 0 {
        m.conflated.inc_by(d.conflated);
    }
    // One observation per frame, of its oldest live quote: the histogram
    // costs several atomics, too many to pay for every quote of a frame.
    if let Some(age) = d.age_secs() {
        m.latency.observe(age);
    }
    m.frames_out.inc();
    m.bytes_out.inc_by((out.len() - HEADER_ROOM.len()) as u64);
    m.control_out.inc_by(n_ctrl);
    m.messages_out.inc_by(d.n);
}
