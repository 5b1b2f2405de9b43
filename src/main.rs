//! The `warabifs` command: parse the command line, then mount in the background (the
//! command returns once the mount is live) or in the foreground with `-f`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use warabifs::cli::{Cli, Tool, ToolCli, TOOLS};
use warabifs::config::{apply_options, pool_from_config_file, MountConfig};
use warabifs::logging;
use warabifs::tools::{self, Inventory};

/// Set in the environment of the background process the command starts.
const DAEMON_ENV: &str = "WARABIFS_DAEMON";
const READY: &str = "ready";

fn main() -> ExitCode {
    let first = std::env::args().nth(1).unwrap_or_default();
    if TOOLS.contains(&first.as_str()) {
        return run_tool(ToolCli::parse().tool);
    }
    let cli = Cli::parse();
    let config = match mount_config(&cli) {
        Ok(config) => config,
        Err(reason) => return fail(&reason),
    };
    if config.remount {
        let options = cli.options.join(",");
        return match warabifs::remount::request(&config.mountpoint, &options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => fail(&reason),
        };
    }
    if config.foreground || std::env::var_os(DAEMON_ENV).is_some() {
        run(&config)
    } else {
        start_daemon()
    }
}

fn run_tool(tool: Tool) -> ExitCode {
    let _ = logging::init(&logging::LogTarget::Stderr, logging::DEFAULT_FILTER);
    let result = match tool {
        Tool::Ls { pool, json } => tools::open(&pool).map(|store| {
            if json {
                print_as(true, &tools::list(&store), |_| String::new());
            } else if let Err(e) = tools::print_listing(&store) {
                eprintln!("warabifs: writing the listing: {e}");
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }),
        Tool::Info { pool, json } => tools::open(&pool).map(|store| {
            let info = tools::info(&store, &Inventory::new(tools::scan(&store)));
            print_as(json, &info, tools::render_info);
            ExitCode::SUCCESS
        }),
        Tool::Check { pool, repair, json } => tools::check(&pool, repair).map(|report| {
            print_as(json, &report, tools::render_check);
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }),
    };
    result.unwrap_or_else(|e| {
        eprintln!("warabifs: {e}");
        ExitCode::from(2)
    })
}

fn print_as<T: serde::Serialize>(json: bool, value: &T, text: fn(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("serializable")
        );
    } else {
        print!("{}", text(value));
    }
}

fn fail(reason: &str) -> ExitCode {
    eprintln!("warabifs: {reason}");
    ExitCode::FAILURE
}

fn mount_config(cli: &Cli) -> Result<MountConfig, String> {
    let (pool, mountpoint) = match (&cli.config, cli.paths.as_slice()) {
        (Some(_), [mnt]) => (PathBuf::new(), mnt.clone()),
        (None, [pool, mnt]) => (pool.clone(), mnt.clone()),
        (Some(_), _) => return Err("with --config give only MOUNTPOINT".into()),
        (None, _) => return Err("give POOL and MOUNTPOINT".into()),
    };
    let mut config = MountConfig::new(pool, mountpoint);
    if let Some(file) = &cli.config {
        config.pool = pool_from_config_file(file, cli.provider_id).map_err(|e| e.to_string())?;
    }
    for list in &cli.options {
        apply_options(&mut config, list).map_err(|e| e.to_string())?;
    }
    config.foreground = cli.foreground;
    config.log_level = cli.log_level.clone().or(config.log_level);
    Ok(config)
}

/// Starts this program again in the background and waits until it says the mount is
/// live (exit 0) or why it failed (its one line, exit 1).
fn start_daemon() -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return fail(&format!("cannot find my own executable: {e}")),
    };
    let child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(DAEMON_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // The daemon writes its log itself (file or syslog); see warabifs::logging.
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return fail(&format!("cannot start the daemon: {e}")),
    };
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    let _ = BufReader::new(stdout).read_line(&mut line);
    match line.trim_end() {
        READY => ExitCode::SUCCESS,
        "" => {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            fail(&format!(
                "the daemon stopped before the mount was live ({status})"
            ))
        }
        reason => fail(reason),
    }
}

/// Mounts and serves until unmounted or told to stop by SIGTERM or SIGINT.
fn run(config: &MountConfig) -> ExitCode {
    // Before any thread starts (see persist_with_cache_flushes).
    let cache_flushes = warabifs::store::is_memory_backed(&config.pool.path)
        && warabifs::pmem::persist_with_cache_flushes();
    if let Err(e) = init_logging(config) {
        return report_failure(&format!("cannot open the log: {e}"));
    }
    if cache_flushes {
        tracing::info!(
            "{} is in memory (tmpfs): persisted with CPU cache flushes, not msync(2), which makes nothing more durable there",
            config.pool.path.display()
        );
    }
    let unmounter = Arc::new(Mutex::new(None));
    if let Err(e) = watch_signals(Arc::clone(&unmounter)) {
        return report_failure(&format!("cannot install signal handlers: {e}"));
    }
    let mut mounted = match warabifs::mount::mount(config) {
        Ok(mounted) => mounted,
        Err(reason) => return report_failure(&reason),
    };
    *unmounter.lock().expect("not poisoned") = Some(mounted.unmounter());
    if let Err(e) = warabifs::remount::serve(config, mounted.fs()) {
        tracing::warn!("cannot start the remount thread, so remounts will be refused: {e}");
    }
    tracing::info!(
        "mounted {} on {}",
        config.pool.path.display(),
        config.mountpoint.display()
    );
    report_ready();
    // Serving ends with the pool closed, the last thing the daemon does.
    match mounted.serve() {
        Ok(()) => {
            tracing::info!("unmounted {}", config.mountpoint.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("session ended with an error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &MountConfig) -> std::io::Result<()> {
    let filter = config
        .log_level
        .clone()
        .or_else(|| std::env::var("WARABIFS_LOG").ok())
        .unwrap_or_else(|| logging::DEFAULT_FILTER.to_string());
    let target = logging::log_target(
        config.log_file.as_deref(),
        in_background(),
        logging::syslog_available(),
    );
    logging::init(&target, &filter)
}

/// On SIGTERM or SIGINT, unmount: the session then ends, persists and closes the pool.
fn watch_signals(unmounter: Arc<Mutex<Option<warabifs::mount::Unmounter>>>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                tracing::info!("signal {signal}: unmounting");
                match unmounter.lock().expect("not poisoned").as_mut() {
                    Some(u) => {
                        if let Err(e) = u.unmount() {
                            tracing::error!("unmount failed, still serving: {e}");
                        }
                    }
                    None => std::process::exit(1),
                }
            }
        })?;
    Ok(())
}

fn in_background() -> bool {
    std::env::var_os(DAEMON_ENV).is_some()
}

/// Tells the waiting command (or the terminal, in the foreground) that the mount failed.
fn report_failure(reason: &str) -> ExitCode {
    tracing::error!("{reason}");
    if in_background() {
        println!("{reason}");
        ExitCode::FAILURE
    } else {
        fail(reason)
    }
}

fn report_ready() {
    if in_background() {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{READY}");
        let _ = out.flush();
    }
}
