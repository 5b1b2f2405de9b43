//! The manual pages: generated from the command-line definition, committed in man/
//! up to date, rendered by man(1), installed and removed by mount-scripts/install.sh.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{run_ok, Scratch};
use warabifs::cli::{man_pages, MOUNT_OPTIONS};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_committed_pages_are_what_the_cli_definition_generates() {
    for (name, text) in man_pages() {
        let committed = std::fs::read(repo().join("man").join(&name)).unwrap_or_default();
        assert!(
            committed == text,
            "man/{name} is out of date: run `cargo run --example man_pages`"
        );
    }
}

/// The page as man(1) renders it, on one long line per paragraph.
fn rendered(name: &str) -> String {
    let out = run_ok(
        Command::new("man") // Debian man-db
            .env("MANWIDTH", "1000")
            .args(["-P", "cat", "-l"])
            .arg(repo().join("man").join(name)),
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn man_renders_both_pages_with_every_mount_option() {
    for name in ["warabifs.8", "mount.warabifs.8"] {
        let page = rendered(name);
        for section in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "MOUNT OPTIONS",
            "SEE ALSO",
        ] {
            assert!(
                page.contains(&format!("\n{section}\n")),
                "{name}: no {section}"
            );
        }
        for (option, _) in MOUNT_OPTIONS {
            assert!(page.contains(option), "{name}: {option} missing");
        }
    }
    let page = rendered("warabifs.8");
    for tool in ["warabifs ls", "warabifs info", "warabifs check"] {
        assert!(page.contains(tool), "warabifs.8: {tool} missing");
    }
    assert!(rendered("mount.warabifs.8").contains("mount -o remount,ro /mnt/regions"));
}

#[test]
fn install_sh_installs_and_uninstall_removes_the_pages() {
    let scratch = Scratch::new();
    let dest = scratch.path("root");
    let script = repo().join("mount-scripts/install.sh");
    let args = [
        "--destdir",
        dest.to_str().unwrap(),
        "--binary",
        env!("CARGO_BIN_EXE_warabifs"),
    ];
    run_ok(Command::new("bash").arg(&script).args(args));
    let man8 = dest.join("usr/local/share/man/man8");
    for name in ["warabifs.8", "mount.warabifs.8"] {
        use std::os::unix::fs::PermissionsExt;
        let installed = man8.join(name);
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            std::fs::read(repo().join("man").join(name)).unwrap()
        );
        let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "{name}");
    }
    run_ok(
        Command::new("bash")
            .arg(&script)
            .args(args)
            .arg("--uninstall"),
    );
    for name in ["warabifs.8", "mount.warabifs.8"] {
        assert!(!man8.join(name).exists(), "{name} left behind");
    }
}
