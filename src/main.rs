//! The `tickergate` binary: parse flags, run the gateway, stop on
//! SIGINT/SIGTERM. `tickergate record ...` records a feed instead
//! ([`tickergate::feed::record`]).

use std::process::ExitCode;
use std::time::Duration;
use tickergate::config::{parse_args, USAGE};
use tickergate::Gateway;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if std::env::args().nth(1).as_deref() == Some("record") {
        return tickergate::feed::record::main(std::env::args().skip(2));
    }
    let cli = match parse_args(std::env::args().skip(1)) {
        Ok(Some(cli)) => cli,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_only {
        // Every file the configuration names is read, as a start would.
        return match Gateway::check(&cli.config) {
            Ok(()) => {
                println!("configuration OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let config = cli.config;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if config.server.worker_threads > 0 {
        rt.worker_threads(config.server.worker_threads);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let grace = Duration::from_millis(config.server.shutdown_grace_ms);
        let gw = match Gateway::start(config).await {
            Ok(gw) => gw,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        // SIGHUP reloads the TLS certificate and key and the JWT public
        // keys (registered before the address is printed, so a signal sent
        // after it is never the default action, which would end the
        // process).
        #[cfg(unix)]
        if tickergate::gateway::reloadable(&gw.shared) {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::hangup()) {
                Ok(mut hup) => {
                    let shared = gw.shared.clone();
                    tokio::spawn(async move {
                        while hup.recv().await.is_some() {
                            let s = shared.clone();
                            // File reads: off the workers serving sessions.
                            let _ = tokio::task::spawn_blocking(move || {
                                tickergate::gateway::reload_tls(&s);
                                tickergate::gateway::reload_jwt_keys(&s);
                            })
                            .await;
                        }
                    });
                }
                Err(e) => tracing::warn!("cannot listen for SIGHUP (reloads): {e}"),
            }
        }
        // SIGINT and SIGTERM too, before the address is printed: a client
        // told where to connect may already be served when the stop comes.
        let stop = tickergate::shutdown::signals();
        let a = gw.local_addr;
        tracing::info!("tickergate listening on {a}");
        let tls = gw.shared.config.server.tls.is_some();
        let (ws, http) = if tls { ("wss", "https") } else { ("ws", "http") };
        println!("tickergate is running");
        println!("  WebSocket : {ws}://{a}/v1/ws   (try: {{\"op\":\"subscribe\",\"symbols\":[\"AAPL\",\"BTC-USD\"]}})");
        println!("  REST      : {http}://{a}/v1/quotes?symbols=AAPL,BTC-USD   {http}://{a}/v1/symbols");
        println!("  metrics   : {http}://{a}/metrics   health: {http}://{a}/healthz  {http}://{a}/readyz");
        println!("  stop      : Ctrl-C");
        stop.recv().await;
        tracing::info!("shutting down: closing sessions with 1001");
        gw.shutdown();
        if !gw.drained(grace).await {
            tracing::warn!("some sessions did not close within {grace:?}");
        }
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}
