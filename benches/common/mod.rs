//! Shared by the load tools under `benches/`: pinning to a core.

use std::process::{Command, ExitCode, Stdio};

/// Whether `taskset` is available to pin processes to cores.
pub fn have_taskset() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Re-executes this tool under `taskset -c 1` once (the gateway gets core
/// 0), marking the child with `pinned_env`. Returns the child's exit code
/// if it did; `None` means carry on in this process.
pub fn pin_self(pin: bool, pinned_env: &str) -> Option<ExitCode> {
    if !pin || std::env::var_os(pinned_env).is_some() || !have_taskset() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let status = Command::new("taskset")
        .arg("-c")
        .arg("1")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(pinned_env, "1")
        .status()
        .ok()?;
    Some(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

/// The shared `main` of a load tool: parse options (exit 2 on a usage
/// error), pin itself to core 1, run `body` on a current-thread runtime
/// (the clients share one core), report errors under `name`.
pub fn run_tool<O, F>(
    name: &str,
    parse: impl FnOnce() -> Result<O, String>,
    pin: impl Fn(&O) -> bool,
    pinned_env: &str,
    body: impl FnOnce(O) -> F,
) -> ExitCode
where
    F: std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
{
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(code) = pin_self(pin(&o), pinned_env) {
        return code;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(body(o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a results document as pretty JSON, creating its folder.
pub fn write_json(
    path: &std::path::Path,
    doc: &serde_json::Value,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(doc)? + "\n")?;
    println!("\nwrote {}", path.display());
    Ok(())
}
