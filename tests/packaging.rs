//! The install path: the cargo-deb metadata names files that exist, the unit it installs is the
//! shipped one, and the maintainer script creates the user before systemd starts anything.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn deb_metadata() -> toml::Table {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    manifest["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]")
        .clone()
}

#[test]
fn deb_assets_exist_and_cover_binary_config_unit_and_user() {
    let deb = deb_metadata();
    let assets = deb["assets"].as_array().unwrap();
    let mut targets = Vec::new();
    for asset in assets {
        let fields: Vec<&str> = asset
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let [source, target, mode] = fields[..] else {
            panic!("asset {asset:?} is not [source, target, mode]");
        };
        assert!(u32::from_str_radix(mode, 8).is_ok(), "mode {mode}");
        // The binary is built by `cargo deb` itself.
        if let Some((dir, suffix)) = source.split_once("/*") {
            // cargo-deb expands globs (`docs/*.md`): one that matches nothing ships nothing.
            assert!(
                target.ends_with('/'),
                "glob {source} needs a directory target"
            );
            let matched = std::fs::read_dir(root().join(dir))
                .unwrap_or_else(|e| panic!("asset {source}: {e}"))
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name().to_string_lossy().ends_with(suffix))
                .count();
            assert!(matched > 0, "asset {source} matches no file");
        } else if !source.starts_with("target/") {
            assert!(root().join(source).is_file(), "asset {source} is missing");
        }
        targets.push(target.to_owned());
    }
    for want in [
        "usr/bin/",
        "etc/runnerhub/runnerhub.toml",
        "usr/lib/sysusers.d/runnerhub.conf",
    ] {
        assert!(
            targets.iter().any(|t| t == want),
            "no asset installs {want}"
        );
    }
    let units = deb["systemd-units"].as_table().unwrap();
    let dir = units["unit-scripts"].as_str().unwrap();
    let name = units["unit-name"].as_str().unwrap();
    assert!(root().join(dir).join(format!("{name}.service")).is_file());
    assert_eq!(units["restart-after-upgrade"].as_bool(), Some(true));
}

#[test]
fn postinst_creates_the_user_and_keeps_the_debhelper_hook() {
    let deb = deb_metadata();
    let scripts = root().join(deb["maintainer-scripts"].as_str().unwrap());
    let postinst = std::fs::read_to_string(scripts.join("postinst")).unwrap();
    assert!(postinst.contains("systemd-sysusers runnerhub.conf"));
    assert!(postinst.contains("#DEBHELPER#"));
    let user = postinst.find("systemd-sysusers").unwrap();
    assert!(
        user < postinst.find("#DEBHELPER#").unwrap(),
        "user before the unit starts"
    );
    let out = std::process::Command::new("sh")
        .arg("-n")
        .arg(scripts.join("postinst"))
        .output()
        .unwrap();
    assert!(out.status.success(), "postinst is not valid sh");
}
