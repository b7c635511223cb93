//! The `tickergate` binary: see [`tickergate::cli`].

fn main() -> std::process::ExitCode {
    tickergate::cli::main()
}
