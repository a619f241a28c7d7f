//! maelctl as a user meets it before any server answers: its version, usage errors (exit 2),
//! bad project files (exit 1 with the file, line and key) and an unreachable node.

use std::process::Command;

fn maelctl(args: &[&str], dir: &std::path::Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_maelctl"))
        .args(args)
        .current_dir(dir)
        .env("MAELSTROM_PRIVATE_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn version_usage_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = maelctl(&["version"], dir.path());
    assert_eq!(code, Some(0));
    assert!(out.starts_with("maelctl v"), "{out}");

    let (code, _, err) = maelctl(&["es", "ls", "--type", "kafka"], dir.path());
    assert_eq!(code, Some(2), "usage errors exit 2: {err}");
    assert!(err.contains("kafka"), "{err}");

    let (code, out, _) = maelctl(&["project", "put"], dir.path());
    assert_eq!(code, Some(1));
    assert!(
        out.starts_with(
            "ERROR: Unable to load project YAML file - cannot read project file maelstrom.yml"
        ),
        "{out}"
    );

    std::fs::write(
        dir.path().join("maelstrom.yml"),
        "name: demo\ncomponents:\n  web:\n    image: app\n    idletimeout: 30\n",
    )
    .unwrap();
    let (code, out, _) = maelctl(&["project", "put"], dir.path());
    assert_eq!(code, Some(1));
    assert!(
        out.contains("maelstrom.yml:5:"),
        "the line of the bad key: {out}"
    );
    assert!(out.contains("unknown field `idletimeout`"), "{out}");
    assert!(
        out.contains("idletimeoutseconds"),
        "the valid keys are listed: {out}"
    );
}

#[test]
fn an_unreachable_node_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = maelctl(&["project", "ls"], dir.path());
    assert_eq!(code, Some(1));
    assert!(
        out.starts_with("ERROR: ListProjects failed - cannot reach http://127.0.0.1:9/_mael/v1"),
        "{out}"
    );
    assert!(out.contains("is maelstromd running?"), "{out}");
}

#[test]
fn env_files_feed_interpolation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vars.env"), "# tag\nTAG=v7\n").unwrap();
    std::fs::write(
        dir.path().join("maelstrom.yml"),
        "name: demo\ncomponents:\n  web:\n    image: app\n    httpport: ${TAG}\n",
    )
    .unwrap();
    // Interpolation happens before parsing: the value from the env file reaches the parser.
    let (code, out, _) = maelctl(&["project", "put", "--env", "vars.env"], dir.path());
    assert_eq!(code, Some(1));
    assert!(
        out.contains("maelstrom.yml:5:") && out.contains("\"v7\""),
        "{out}"
    );
    let (code, out, _) = maelctl(&["project", "put", "--env", "missing.env"], dir.path());
    assert_eq!(code, Some(1));
    assert!(
        out.starts_with("ERROR: Unable to load env file: missing.env"),
        "{out}"
    );
}
