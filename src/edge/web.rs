//! The ticker board at `GET /` and its assets, embedded in the binary (no
//! CDN: the board works offline). The page (`web/`) uses the JavaScript
//! client package (`clients/js/src/index.js`), served as
//! `/assets/tickergate-client.js`, the same file npm users get.

use super::response::{full, Resp};
use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};

/// One embedded file: its path, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../web/index.html"),
    },
    Asset {
        path: "/assets/board.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/board.js"),
    },
    Asset {
        path: "/assets/decimal.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/decimal.js"),
    },
    Asset {
        path: "/assets/board.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/board.css"),
    },
    Asset {
        path: "/assets/tickergate-client.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../clients/js/src/index.js"),
    },
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../web/favicon.svg"),
    },
    // Browsers ask for /favicon.ico whatever the page links: the same icon.
    Asset {
        path: "/favicon.ico",
        content_type: "image/svg+xml",
        body: include_bytes!("../../web/favicon.svg"),
    },
];

/// The page may load only its own scripts and styles and talk only to its
/// own origin (REST and WebSocket); nothing inline runs.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The embedded file at `path`, if there is one.
pub(super) fn asset(path: &str) -> Option<Resp> {
    let a = ASSETS.iter().find(|a| a.path == path)?;
    let mut r = Response::new(full(Bytes::from_static(a.body)));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    // Assets change with the binary, not while it runs; revalidation is
    // cheap on loopback and keeps an upgraded gateway's page current.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if a.path == "/" {
        h.insert("content-security-policy", HeaderValue::from_static(CSP));
        h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_served() {
        let html = std::str::from_utf8(include_bytes!("../../web/index.html")).unwrap();
        let board = std::str::from_utf8(include_bytes!("../../web/board.js")).unwrap();
        for text in [html, board] {
            for part in text.split(['"', '\'']) {
                if part.starts_with("/assets/") || part.starts_with("/favicon") {
                    assert!(asset(part).is_some(), "{part} is named but not served");
                }
            }
        }
        assert!(asset("/assets/nope.js").is_none());
        assert!(html.contains("/assets/board.js"));
    }
}
