//! Every way the server closes a session, in one table: the close code, the
//! reason sent in the close frame, and the label it is counted under in
//! `tickergate_disconnects_total{code}`. The session closes only with these,
//! the metrics pre-register their labels from [`Disconnect::ALL`], and
//! docs/PROTOCOL.md lists each row ("Close reasons"), which a test checks
//! against the table, so the three never drift apart.

/// Why the server closed a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect {
    /// The WebSocket close code.
    pub code: u16,
    /// The close frame's reason text, what the client is told.
    pub reason: &'static str,
    /// When it happens, as docs/PROTOCOL.md says it.
    pub when: &'static str,
    /// `code` as the metric label.
    pub label: &'static str,
}

macro_rules! table {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $reason:literal, $when:literal;)*) => {
        impl Disconnect {
            $($(#[$doc])* pub const $name: Disconnect = Disconnect {
                code: $code,
                reason: $reason,
                when: $when,
                label: stringify!($code),
            };)*

            /// Every row of the table.
            pub const ALL: &'static [Disconnect] = &[$(Disconnect::$name),*];
        }
    };
}

table! {
    SHUTDOWN = 1001, "server shutting down",
        "the gateway is stopping: reconnect, with jitter";
    PROTOCOL_ERROR = 1002, "protocol error",
        "a WebSocket protocol violation (e.g. an unmasked client frame)";
    INVALID_UTF8 = 1007, "invalid UTF-8",
        "a text frame that is not UTF-8";
    TOKEN_INVALID = 1008, "invalid token",
        "the token is unknown, malformed or badly signed";
    TOKEN_EXPIRED = 1008, "expired token",
        "the JWT is past its `exp`";
    TOKEN_NOT_YET_VALID = 1008, "token not yet valid",
        "the JWT is before its `nbf`";
    KEY_AT_LIMIT = 1008, "too many connections for this key",
        "the key already holds its `max_connections` sessions";
    FLOODING = 1008, "kept flooding after rate_limited",
        "more than `max_rate_violations` ops refused with `rate_limited`";
    IDLE = 1008, "idle timeout: no pong",
        "no frame at all from the client for `idle_timeout_ms` after a Ping";
    TOO_BIG = 1009, "message too big",
        "a frame or message over 4 x `max_message_bytes`";
    SERVER_FULL = 1013, "server full, try again later",
        "the gateway holds `server.max_connections` sessions";
    ADDRESS_FULL = 1013, "too many connections from this address, try again later",
        "the client's address holds `server.max_connections_per_ip` sessions";
    SLOW_WRITE = 4008, "slow consumer: could not keep up",
        "the socket took no byte of a frame for `slow_consumer_ms`";
    SLOW_REPLIES = 4008, "slow consumer: replies not read",
        "more than `max_pending_control` replies wait for the client";
    SLOW_READ = 4008, "slow consumer: data not read",
        "a full read window unread, or a full ack window unacknowledged, for `slow_consumer_ms`";
}

impl Disconnect {
    /// The distinct close codes' labels, in table order.
    pub fn labels() -> impl Iterator<Item = &'static str> {
        Disconnect::ALL
            .iter()
            .enumerate()
            .filter(|(i, d)| !Disconnect::ALL[..*i].iter().any(|e| e.code == d.code))
            .map(|(_, d)| d.label)
    }
}

#[cfg(test)]
mod tests {
    use super::Disconnect;

    const PROTOCOL: &str = include_str!("../../docs/PROTOCOL.md");

    /// The rows of docs/PROTOCOL.md's "Close reasons" table.
    fn documented() -> Vec<String> {
        let start = PROTOCOL
            .find("### Close reasons")
            .expect("docs/PROTOCOL.md has a \"Close reasons\" section");
        PROTOCOL[start..]
            .lines()
            .skip_while(|l| !l.starts_with("| 1"))
            .take_while(|l| l.starts_with('|'))
            .map(str::to_string)
            .collect()
    }

    fn row(d: &Disconnect) -> String {
        format!("| {} | `{}` | {} |", d.code, d.reason, d.when)
    }

    #[test]
    fn the_protocol_document_lists_exactly_the_table() {
        let doc = documented();
        let table: Vec<String> = Disconnect::ALL.iter().map(row).collect();
        assert_eq!(
            doc, table,
            "docs/PROTOCOL.md \"Close reasons\" vs the table"
        );
    }

    #[test]
    fn reasons_are_unique_and_fit_a_close_frame() {
        for (i, d) in Disconnect::ALL.iter().enumerate() {
            // A close frame's payload is at most 125 bytes, 2 of them the code.
            assert!(d.reason.len() <= 123, "{d:?}");
            assert_eq!(d.label, d.code.to_string());
            assert!(
                !Disconnect::ALL[..i].iter().any(|e| e.reason == d.reason),
                "{d:?}"
            );
        }
        let labels: Vec<&str> = Disconnect::labels().collect();
        assert_eq!(
            labels,
            ["1001", "1002", "1007", "1008", "1009", "1013", "4008"]
        );
    }
}
