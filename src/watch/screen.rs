//! What watch prints: one JSON line per server message (`--json`, or
//! stdout not a terminal), or a live table redrawn in place on a terminal.
//!
//! The table uses the terminal's alternate screen with the cursor hidden
//! (restored on exit, also on a panic), and redraws from the top-left
//! corner at most every `TICK` (10 times a second), only when
//! something changed or the ages moved. Plain ANSI escapes; `NO_COLOR`
//! turns the colours off (not the cursor movements).

use super::book::{Book, Row};
use crate::model::now_ns;
use std::io::{self, BufWriter, Stdout, Write};
use std::time::{Duration, Instant};

/// `s` without control characters: what a gateway sends never moves the
/// cursor or recolours the terminal.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// The connection, as the status line shows it.
#[derive(Debug, Clone)]
pub enum Conn {
    Connecting,
    Connected {
        epoch: Option<String>,
    },
    /// The next attempt is at `until` (number `attempt` in a row).
    Waiting {
        until: Instant,
        attempt: u32,
        reason: String,
    },
}

pub enum Output {
    Json(BufWriter<Stdout>),
    Table(Table),
}

impl Output {
    pub fn json() -> Output {
        Output::Json(BufWriter::with_capacity(64 * 1024, io::stdout()))
    }

    /// Takes over the terminal (alternate screen, cursor hidden).
    pub fn table(url: String) -> io::Result<Output> {
        let mut t = Table {
            out: io::stdout(),
            url,
            conn: Conn::Connecting,
            notice: None,
            dirty: true,
            last_draw: None,
            active: false,
            widths: HEADER.map(str::len),
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        };
        t.out.write_all(b"\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J")?;
        t.out.flush()?;
        t.active = true;
        Ok(Output::Table(t))
    }

    /// A server message that watch shows (as received).
    pub fn message(&mut self, raw: &str) -> io::Result<()> {
        match self {
            Output::Json(w) => {
                // A raw newline in JSON can only be whitespace between
                // tokens (strings escape theirs): one message, one line.
                if raw.contains(['\n', '\r']) {
                    w.write_all(raw.replace(['\n', '\r'], " ").as_bytes())?;
                } else {
                    w.write_all(raw.as_bytes())?;
                }
                w.write_all(b"\n")
            }
            Output::Table(t) => {
                t.dirty = true;
                Ok(())
            }
        }
    }

    /// The end of a server frame: JSON lines go out now.
    pub fn end_frame(&mut self) -> io::Result<()> {
        match self {
            Output::Json(w) => w.flush(),
            Output::Table(_) => Ok(()),
        }
    }

    /// The connection changed: on stderr for JSON, on the status line.
    pub fn conn(&mut self, url: &str, conn: Conn) {
        match self {
            Output::Json(_) => match &conn {
                Conn::Connecting => {}
                Conn::Connected { epoch } => {
                    let epoch = clean(epoch.as_deref().unwrap_or("?"));
                    eprintln!("watch: connected to {url} (epoch {epoch})");
                }
                Conn::Waiting { until, reason, .. } => {
                    let secs = until
                        .saturating_duration_since(Instant::now())
                        .as_secs_f64();
                    eprintln!("watch: {}; retrying in {secs:.1} s", clean(reason));
                }
            },
            Output::Table(t) => {
                if matches!(conn, Conn::Connected { .. }) {
                    t.notice = None;
                }
                t.conn = conn;
                t.dirty = true;
            }
        }
    }

    /// Something worth telling that is not an error of watch's own.
    pub fn notice(&mut self, text: String) {
        match self {
            Output::Json(_) => eprintln!("watch: {}", clean(&text)),
            Output::Table(t) => {
                t.notice = Some(clean(&text));
                t.dirty = true;
            }
        }
    }

    /// Called every `TICK`: redraws the table when due.
    pub fn tick(&mut self, book: &Book) -> io::Result<()> {
        match self {
            Output::Json(_) => Ok(()),
            Output::Table(t) => t.tick(book),
        }
    }

    /// Gives the terminal back (cursor shown, normal screen).
    pub fn close(&mut self) {
        match self {
            Output::Json(w) => {
                let _ = w.flush();
            }
            Output::Table(t) => t.restore(),
        }
    }
}

pub struct Table {
    out: Stdout,
    url: String,
    conn: Conn,
    notice: Option<String>,
    dirty: bool,
    last_draw: Option<Instant>,
    /// The terminal is taken over (to restore).
    active: bool,
    /// Column widths: they only grow, so columns do not jump about.
    widths: [usize; 7],
    color: bool,
}

/// The ages move: redraw at least this often while nothing else changes.
const AGE_REDRAW: Duration = Duration::from_millis(250);

pub const HEADER: [&str; 7] = ["SYMBOL", "BID", "ASK", "LAST", "JUMPS", "AGE ms", "STALE"];

impl Table {
    fn tick(&mut self, book: &Book) -> io::Result<()> {
        let due = self.last_draw.is_none_or(|t| t.elapsed() >= AGE_REDRAW);
        if !(self.dirty || due) {
            return Ok(());
        }
        let screen = self.render(book, now_ns(), Instant::now());
        self.out.write_all(screen.as_bytes())?;
        self.out.flush()?;
        self.dirty = false;
        self.last_draw = Some(Instant::now());
        Ok(())
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// The whole screen: from the top-left corner, each line erased to its
    /// end, the rest of the screen erased below.
    fn render(&mut self, book: &Book, now: i64, instant: Instant) -> String {
        let connected = matches!(self.conn, Conn::Connected { .. });
        let state = match &self.conn {
            Conn::Connecting => self.paint("33", "connecting"),
            Conn::Connected { epoch } => {
                let e = clean(epoch.as_deref().unwrap_or("?"));
                format!("{} (epoch {e})", self.paint("32", "connected"))
            }
            Conn::Waiting {
                until,
                attempt,
                reason,
            } => {
                let secs = until.saturating_duration_since(instant).as_secs_f64();
                let head = format!("reconnecting in {secs:.1} s (attempt {attempt})");
                format!("{}: {}", self.paint("31", &head), clean(reason))
            }
        };
        let mut s = String::from("\x1b[H");
        let line = |s: &mut String, text: &str| {
            s.push_str(text);
            s.push_str("\x1b[K\n");
        };
        let title = self.paint("1", "tickergate watch");
        line(&mut s, &format!("{title}  {}  {state}", self.url));
        line(&mut s, &self.notice.clone().unwrap_or_default());
        let cells: Vec<[String; 7]> = book
            .rows()
            .iter()
            .map(|r| cells(r, now, connected))
            .collect();
        let widths = &mut self.widths;
        for c in &cells {
            for (w, cell) in widths.iter_mut().zip(c) {
                *w = (*w).max(cell.len());
            }
        }
        let widths = *widths;
        let header: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
        line(&mut s, &self.paint("1", &join(&header, &widths)));
        for c in &cells {
            let text = join(c, &widths);
            match c[6].as_str() {
                "stale" => line(&mut s, &self.paint("33", &text)),
                _ => line(&mut s, &text),
            }
        }
        line(&mut s, "");
        let footer = "JUMPS: updates conflated (seq gaps)  AGE: ms since gw_ts  Ctrl-C quits";
        s.push_str(&self.paint("2", footer));
        s.push_str("\x1b[K\x1b[J");
        s
    }

    fn restore(&mut self) {
        if self.active {
            self.active = false;
            let _ = self.out.write_all(b"\x1b[0m\x1b[?25h\x1b[?1049l");
            let _ = self.out.flush();
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        self.restore();
    }
}

/// A row's cells: the server's strings as they came, `-` for a field its
/// feed does not provide (or no quote yet).
fn cells(r: &Row, now: i64, connected: bool) -> [String; 7] {
    let text = |v: &Option<String>| v.as_deref().map_or_else(|| "-".into(), clean);
    let age = match r.gw_ts {
        Some(ts) => ((now.saturating_sub(ts)) / 1_000_000).max(0).to_string(),
        None => "-".into(),
    };
    let stale = if r.seq.is_none() && r.gw_ts.is_none() {
        "-"
    } else if r.stale || !connected {
        "stale"
    } else {
        "live"
    };
    [
        clean(&r.symbol),
        text(&r.bid),
        text(&r.ask),
        text(&r.last),
        r.jumps.to_string(),
        age,
        stale.into(),
    ]
}

/// Symbol left-aligned, numbers right-aligned, stale left-aligned.
fn join(cells: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, (c, &w)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            out.push_str("  ");
        }
        if i == 0 || i == cells.len() - 1 {
            out.push_str(&format!("{c:<w$}"));
        } else {
            out.push_str(&format!("{c:>w$}"));
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::book::Msg;

    #[test]
    fn the_table_shows_the_strings_as_sent() {
        let mut book = Book::new(&["AAPL".into(), "BTC-USD".into()]);
        book.welcome(Some("e"));
        let m = Msg::parse(
            r#"{"type":"quote","symbol":"AAPL","seq":3,"bid":"189.1200","ask":"189.14","gw_ts":1000000000}"#,
        );
        book.quote(&m);
        let mut t = Table {
            out: io::stdout(),
            url: "ws://h/v1/ws".into(),
            conn: Conn::Connected {
                epoch: Some("e".into()),
            },
            notice: None,
            dirty: true,
            last_draw: None,
            active: false,
            widths: HEADER.map(str::len),
            color: false,
        };
        let s = t.render(&book, 1_250_000_000, Instant::now());
        assert!(s.starts_with("\x1b[H"));
        assert!(s.ends_with("\x1b[J"));
        let lines: Vec<&str> = s.split("\x1b[K\n").collect();
        assert!(lines[0].contains("connected (epoch e)"), "{s}");
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["SYMBOL", "BID", "ASK", "LAST", "JUMPS", "AGE", "ms", "STALE"]
        );
        let aapl: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            aapl,
            ["AAPL", "189.1200", "189.14", "-", "0", "250", "live"]
        );
        let btc: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(btc, ["BTC-USD", "-", "-", "-", "0", "-", "-"]);
        assert_eq!(clean("1.0\u{1b}[2J\n"), "1.0\u{fffd}[2J\u{fffd}");
    }
}
