//! A tiny local image for Docker tests, made without any registry: the static busybox from
//! the Debian package `busybox-static` (`apt-get install busybox-static`), imported with
//! `docker import`. Idempotent: an existing image is reused.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The image the Docker tests run.
pub const TEST_IMAGE: &str = "runnerhub-test-busybox:latest";

/// Where `busybox-static` installs the binary.
const BUSYBOX: &str = "/bin/busybox";

/// Makes sure [`TEST_IMAGE`] exists; panics with the fix when it cannot (tests must fail, not
/// skip, when Docker or busybox is missing).
pub fn ensure_test_image() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if docker(&["image", "inspect", TEST_IMAGE]) {
            return;
        }
        assert!(
            Path::new(BUSYBOX).exists(),
            "{BUSYBOX} is missing: `apt-get install -y busybox-static` (needed to build {TEST_IMAGE})"
        );
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
        for applet in ["sh", "sleep", "true", "false", "env", "cat", "head", "yes", "tail"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        let tar = dir.path().join("rootfs.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(dir.path())
            .arg("-cf")
            .arg(&tar)
            .args(["bin", "tmp"])
            .status()
            .expect("run tar");
        assert!(status.success(), "tar failed");
        // Another test process (nextest) may import concurrently: both write the same tag.
        let status = Command::new("docker")
            .args(["import", "--change", "CMD [\"/bin/sh\"]"])
            .arg(&tar)
            .arg(TEST_IMAGE)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run `docker import` (is the Docker CLI installed?)");
        assert!(status.success(), "docker import of {TEST_IMAGE} failed");
    });
    TEST_IMAGE
}

fn docker(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Removes the named containers when dropped, so a failing test leaves nothing behind.
pub struct ContainerCleanup(pub Vec<String>);

impl Drop for ContainerCleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", name])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}
