//! Where the log goes: stderr in the foreground; for the background daemon, the
//! `log_file` option, else syslog (journald reads it too), else a fallback file, so that
//! a daemon's log is never silently dropped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

const SYSLOG_SOCKET: &str = "/dev/log";
/// Warnings and errors; fuser's own warning that the kernel already unmounted (after an
/// external umount) is noise, so its session module logs errors only.
pub const DEFAULT_FILTER: &str = "warn,fuser::session=error";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    File(PathBuf),
    Syslog,
}

/// Chooses the log destination. `syslog_available`: whether /dev/log exists.
pub fn log_target(log_file: Option<&Path>, background: bool, syslog_available: bool) -> LogTarget {
    match (log_file, background, syslog_available) {
        (Some(file), _, _) => LogTarget::File(file.to_path_buf()),
        (None, false, _) => LogTarget::Stderr,
        (None, true, true) => LogTarget::Syslog,
        (None, true, false) => LogTarget::File(fallback_log_file()),
    }
}

/// /var/log/warabifs.log for root, else a per-user file in the temporary directory.
pub fn fallback_log_file() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        PathBuf::from("/var/log/warabifs.log")
    } else {
        std::env::temp_dir().join(format!("warabifs-{}.log", nix::unistd::geteuid()))
    }
}

pub fn syslog_available() -> bool {
    Path::new(SYSLOG_SOCKET).exists()
}

/// Installs the global subscriber. `filter` is an EnvFilter directive ("info",
/// "warabifs=debug", ...); an invalid one falls back to [`DEFAULT_FILTER`].
pub fn init(target: &LogTarget, filter: &str) -> std::io::Result<()> {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match target {
        LogTarget::Stderr => builder.with_writer(std::io::stderr).init(),
        LogTarget::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            builder.with_writer(Mutex::new(file)).init();
        }
        LogTarget::Syslog => {
            let formatter = syslog::Formatter3164 {
                facility: syslog::Facility::LOG_DAEMON,
                hostname: None,
                process: "warabifs".into(),
                pid: std::process::id(),
            };
            let logger = syslog::unix(formatter).map_err(std::io::Error::other)?;
            let writer = SyslogWriter {
                logger: Arc::new(Mutex::new(logger)),
            };
            builder.without_time().with_writer(writer).init();
        }
    }
    Ok(())
}

type Logger = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

/// Hands each formatted event to syslog as one message of the event's severity.
#[derive(Clone)]
struct SyslogWriter {
    logger: Arc<Mutex<Logger>>,
}

struct SyslogLine {
    logger: Arc<Mutex<Logger>>,
    level: Level,
    line: Vec<u8>,
}

impl<'a> MakeWriter<'a> for SyslogWriter {
    type Writer = SyslogLine;

    fn make_writer(&'a self) -> SyslogLine {
        self.line(Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine {
        self.line(*meta.level())
    }
}

impl SyslogWriter {
    fn line(&self, level: Level) -> SyslogLine {
        SyslogLine {
            logger: Arc::clone(&self.logger),
            level,
            line: Vec::new(),
        }
    }
}

impl Write for SyslogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        let Ok(mut logger) = self.logger.lock() else {
            return;
        };
        // A log line that cannot be sent has nowhere else to go.
        let _ = match self.level {
            Level::ERROR => logger.err(text),
            Level::WARN => logger.warning(text),
            Level::INFO => logger.info(text),
            _ => logger.debug(text),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_log_file_always_wins() {
        let file = Path::new("/tmp/x.log");
        assert_eq!(
            log_target(Some(file), true, true),
            LogTarget::File(file.into())
        );
        assert_eq!(
            log_target(Some(file), false, false),
            LogTarget::File(file.into())
        );
    }

    #[test]
    fn the_foreground_logs_to_stderr() {
        assert_eq!(log_target(None, false, true), LogTarget::Stderr);
    }

    #[test]
    fn the_background_daemon_uses_syslog_else_a_file() {
        assert_eq!(log_target(None, true, true), LogTarget::Syslog);
        assert_eq!(
            log_target(None, true, false),
            LogTarget::File(fallback_log_file())
        );
    }
}
