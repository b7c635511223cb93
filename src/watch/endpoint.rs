//! The gateway's WebSocket URL from what the user typed: `ws://` or
//! `wss://`, `http://` and `https://` mapped to them, or a bare
//! `host:port` (plain `ws://`). The path gets `/v1/ws` unless it already
//! ends with it (a gateway behind a proxy prefix: `wss://host/md` becomes
//! `wss://host/md/v1/ws`). A query (e.g. `?token=`) is kept as typed.

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The full `ws://` or `wss://` URL, path `.../v1/ws`, query kept.
    pub url: String,
    /// `wss://`: TLS on the connection.
    pub tls: bool,
    /// The host as written in the URL, without the brackets of an IPv6
    /// address: what TCP resolves and what TLS verifies.
    pub host: String,
    pub port: u16,
}

/// A URL watch cannot connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--url {url:?}: {why}")]
pub struct BadUrl {
    url: String,
    why: &'static str,
}

impl Endpoint {
    pub fn parse(input: &str) -> Result<Endpoint, BadUrl> {
        let bad = |why| BadUrl {
            url: input.to_string(),
            why,
        };
        let s = input.trim();
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("ws".to_string(), s),
        };
        let tls = match scheme.as_str() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            _ => return Err(bad("the scheme must be ws://, wss://, http:// or https://")),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported: use --token"));
        }
        if authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("the host contains spaces"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host or port"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p,
            None if tls => 443,
            None => 80,
        };
        let path = path.trim_end_matches('/');
        let path = if path.ends_with("/v1/ws") {
            path.to_string()
        } else {
            format!("{path}/v1/ws")
        };
        let ws = if tls { "wss" } else { "ws" };
        let mut url = format!("{ws}://{authority}{path}");
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            url.push('?');
            url.push_str(q);
        }
        Ok(Endpoint {
            url,
            tls,
            host: host.to_string(),
            port,
        })
    }

    /// The URL for messages and the status line: a `token=` in the query
    /// is shown as `token=***`.
    pub fn display(&self) -> String {
        let Some((base, query)) = self.url.split_once('?') else {
            return self.url.clone();
        };
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some(("token", _)) => "token=***".to_string(),
                _ => kv.to_string(),
            })
            .collect();
        format!("{base}?{}", query.join("&"))
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `None` when malformed.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => return None,
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> String {
        Endpoint::parse(s).unwrap().url
    }

    #[test]
    fn schemes_paths_and_ports() {
        assert_eq!(url("ws://127.0.0.1:8080"), "ws://127.0.0.1:8080/v1/ws");
        assert_eq!(url("ws://127.0.0.1:8080/"), "ws://127.0.0.1:8080/v1/ws");
        assert_eq!(
            url("ws://127.0.0.1:8080/v1/ws"),
            "ws://127.0.0.1:8080/v1/ws"
        );
        assert_eq!(url("ws://h:1/v1/ws/"), "ws://h:1/v1/ws");
        assert_eq!(url("http://h:1"), "ws://h:1/v1/ws");
        assert_eq!(url("HTTPS://h/md/"), "wss://h/md/v1/ws");
        assert_eq!(url("localhost:9000"), "ws://localhost:9000/v1/ws");
        assert_eq!(
            url("wss://h/v1/ws?token=a&x=1#f"),
            "wss://h/v1/ws?token=a&x=1"
        );
        let e = Endpoint::parse("https://example.com").unwrap();
        assert!(e.tls);
        assert_eq!((e.host.as_str(), e.port), ("example.com", 443));
        let e = Endpoint::parse("http://example.com").unwrap();
        assert_eq!((e.tls, e.port), (false, 80));
        let e = Endpoint::parse("ws://[::1]:81").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 81));
        assert_eq!(e.url, "ws://[::1]:81/v1/ws");
    }

    #[test]
    fn bad_urls() {
        for bad in [
            "ftp://h",
            "ws://",
            "ws://:80",
            "ws://h:0",
            "ws://h:99999",
            "ws://h:x",
            "ws://u:p@h",
            "ws://[::1",
            "ws://::1",
            "ws://a b",
        ] {
            let e = Endpoint::parse(bad).unwrap_err();
            assert!(e.to_string().contains(bad.trim()), "{e}");
        }
    }

    #[test]
    fn display_hides_the_token() {
        let e = Endpoint::parse("ws://h/?a=1&token=secret").unwrap();
        assert_eq!(e.display(), "ws://h/v1/ws?a=1&token=***");
        assert!(!e.display().contains("secret"));
    }
}
