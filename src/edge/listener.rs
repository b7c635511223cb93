//! The public listener: accepts TCP (refusing addresses over their
//! connection rate at once), runs the TLS handshake when configured, and
//! serves HTTP/1.1 with upgrades on each connection until shutdown.

use super::{ingest, rest, Context};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Accepts connections until shutdown.
pub(crate) async fn serve(listener: TcpListener, ctx: Arc<Context>) {
    let mut shutdown = ctx.shutdown.subscribe();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.wait() => return,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // A trusted proxy's connections carry many clients: their rate is
        // checked per forwarded address when they ask for a session.
        if !super::proxy::is_trusted(&ctx.trusted, peer.ip()) && !ctx.conn_limiter.check(peer.ip())
        {
            refuse_rate_limited(stream, &ctx);
            continue;
        }
        tokio::spawn(connection(stream, peer, ctx.clone()));
    }
}

/// Over `server.conn_rate_per_ip`: the connection is refused at accept,
/// without a task or an HTTP parser. A plain-HTTP client gets a 429 if the
/// socket takes it at once (it always does on a fresh connection); the
/// request itself is never read, so the close may reach the client as a
/// reset instead. TLS listeners just close.
fn refuse_rate_limited(stream: TcpStream, ctx: &Context) {
    ctx.metrics.conn_rate_limited.inc();
    if ctx.tls.is_none() {
        let _ = stream.try_write(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nConnection: close\r\n\
              Content-Type: application/json\r\nContent-Length: 76\r\n\r\n\
              {\"type\":\"error\",\"code\":\"rate_limited\",\"message\":\"too many new connections\"}\n",
        );
    }
    drop(stream);
}

async fn connection(stream: TcpStream, peer: SocketAddr, ctx: Arc<Context>) {
    let _ = stream.set_nodelay(true);
    let sndbuf = ctx.session.config.send_buffer_bytes;
    if sndbuf > 0 {
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(sndbuf);
    }
    if let Some(tls) = ctx.tls.clone() {
        // Bounded like a request head, so a half-open client cannot hold
        // the task forever.
        let limit = Duration::from_millis(ctx.config.header_timeout_ms);
        let failure = match tokio::time::timeout(limit, tls.accept(stream)).await {
            Ok(Ok(tls_stream)) => return serve_http(tls_stream, peer, ctx).await,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        tracing::debug!(%peer, "tls handshake failed: {failure}");
        ctx.metrics.tls_handshake_failures.inc();
        return;
    }
    serve_http(stream, peer, ctx).await
}

/// Serves HTTP/1.1 and WebSocket upgrades over plain TCP or TLS.
async fn serve_http<S>(stream: S, peer: SocketAddr, ctx: Arc<Context>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut shutdown = ctx.shutdown.subscribe();
    let svc = {
        let ctx = ctx.clone();
        service_fn(move |req| {
            let ctx = ctx.clone();
            async move {
                if req.uri().path() == "/v1/ingest" {
                    return Ok::<_, Infallible>(ingest::handle(req, &ctx.ingest).await);
                }
                if req.uri().path() == "/v1/quotes" && ctx.last_values.is_some() {
                    return Ok::<_, Infallible>(rest::quotes_from_stream(req, ctx).await);
                }
                Ok::<_, Infallible>(rest::route(req, ctx, peer))
            }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(ctx.config.header_timeout_ms))
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, "http connection: {e}");
            }
        }
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

/// The public listener, with an accept backlog of 4096 (tokio's `bind`
/// uses 1024; the kernel caps it at `net.core.somaxconn`): a reconnect
/// storm after a restart, or a load test opening thousands of sockets,
/// should not see SYNs dropped and retried a second later.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(4096)
}
