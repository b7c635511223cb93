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
