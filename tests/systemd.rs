//! The shipped systemd files: the unit passes `systemd-analyze verify` and a
//! `systemd-analyze security` exposure threshold, carries the settings the daemon relies on,
//! and the sysusers file creates the service user.

use std::path::{Path, PathBuf};
use std::process::Command;

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

fn unit_text() -> String {
    std::fs::read_to_string(systemd_dir().join("runnerhub.service")).unwrap()
}

/// `systemd-analyze`, or `None` (with the reason printed) when the host has none.
fn systemd_analyze() -> Option<&'static str> {
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(out) if out.status.success() => Some("systemd-analyze"),
        _ => {
            eprintln!(
                "SKIPPED: systemd-analyze is not installed (Debian package `systemd`); \
                 the unit was only checked textually"
            );
            None
        }
    }
}

/// The unit with `ExecStart` pointing at the binary under test (verify checks it exists).
fn unit_for_analysis(dir: &Path) -> PathBuf {
    let text = unit_text().replace("/usr/bin/runnerhub", env!("CARGO_BIN_EXE_runnerhub"));
    let path = dir.join("runnerhub.service");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn unit_has_the_settings_the_daemon_relies_on() {
    let unit = unit_text();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for want in [
        "Type=notify",
        "WatchdogSec=30s",
        // Connections are file descriptors (issue #15): the default 1,024 is far too few.
        "LimitNOFILE=65536",
        "Restart=on-failure",
        "User=runnerhub",
        "SupplementaryGroups=docker",
        "StateDirectory=runnerhub",
        "ConfigurationDirectory=runnerhub",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ExecStart=/usr/bin/runnerhub serve --config /etc/runnerhub/runnerhub.toml",
    ] {
        assert!(lines.contains(&want), "runnerhub.service lacks `{want}`");
    }
    // PrivateUsers would hide the docker group; the socket could not be opened.
    assert!(!lines.iter().any(|l| l.starts_with("PrivateUsers=yes")));
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_analysis(dir.path());
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed:\n{stderr}");
    // Warnings (unknown keys, bad values) go to stderr without failing the command.
    let relevant: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("runnerhub.service"))
        .collect();
    assert!(relevant.is_empty(), "verify warnings:\n{stderr}");
}

#[test]
fn systemd_analyze_security_rates_the_unit_well() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_analysis(dir.path());
    // Exposure is 0.0 (locked down) … 10.0; the threshold is ×10. 2.5 allows the docker group and
    // network access the daemon needs, and fails if a hardening line is dropped.
    let out = Command::new(analyze)
        .args(["security", "--offline=true", "--threshold=25", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exposure above 2.5:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Overall exposure level"), "{stdout}");
}

#[test]
fn sysusers_creates_the_service_user() {
    let file = systemd_dir().join("runnerhub.sysusers");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.lines().any(|l| l.starts_with("u runnerhub ")));
    if Command::new("systemd-sysusers")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED: systemd-sysusers is not installed; the file was only checked textually"
        );
        return;
    }
    // Applied to an empty root, it must create the user with the state directory as home.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("runnerhub:"))
        .unwrap_or_else(|| panic!("no runnerhub user in {passwd}"));
    assert!(user.contains(":/var/lib/runnerhub:"), "{user}");
}
