//! Pre-flight checks of `--bin` (spec §4.1): each classic mistake gets a message naming the
//! file and a `Fix:` line, before anything starts.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A `--bin` that cannot run: the message and the fix.
#[derive(Debug)]
pub struct BinProblem {
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub fix: String,
}

/// Checks `bin` (relative to `cwd`; `PATH` is not searched) and returns its canonical path.
pub fn check_bin(bin: &Path, cwd: &Path) -> Result<PathBuf, BinProblem> {
    let shown = bin.display();
    let path = if bin.is_absolute() {
        bin.to_path_buf()
    } else {
        cwd.join(bin)
    };
    let problem = |what: String, fix: String| BinProblem {
        message: format!("Cannot run node binary {shown}: {what}"),
        fix,
    };
    let meta = fs::metadata(&path).map_err(|_| {
        problem(
            format!(
                "no such file (relative to {}; PATH is not searched).",
                cwd.display()
            ),
            format!(
                "--bin ./{} or an absolute path",
                bin.file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default()
            ),
        )
    })?;
    if meta.is_dir() {
        return Err(problem(
            "it is a directory.".into(),
            "point --bin at the executable inside it".into(),
        ));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(problem(
            "the file is not executable.".into(),
            format!("chmod +x {shown}"),
        ));
    }
    let mut head = [0u8; 256];
    let n = fs::File::open(&path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| {
            problem(
                format!("cannot read it: {e}."),
                "check its permissions".into(),
            )
        })?;
    let head = &head[..n];
    let native = head.starts_with(b"\x7fELF")
        || head.starts_with(&[0xcf, 0xfa, 0xed, 0xfe])
        || head.starts_with(&[0xca, 0xfe, 0xba, 0xbe]);
    if !native {
        if !head.starts_with(b"#!") {
            return Err(problem(
                "it is neither a native executable nor a script starting with '#!'.".into(),
                "first line e.g. #!/usr/bin/env python3".into(),
            ));
        }
        let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
        let line = &head[2..line_end];
        if line.ends_with(b"\r") {
            return Err(problem(
                "its '#!' line ends with a carriage return (Windows line endings).".into(),
                format!("convert it to LF line endings, e.g. sed -i 's/\\r$//' {shown}"),
            ));
        }
        let text = String::from_utf8_lossy(line);
        let mut words = text.split_whitespace();
        let interpreter = words.next().unwrap_or("");
        let missing = |name: &str| {
            problem(
                format!("its '#!' line names {name}, which does not exist."),
                format!("install {name}, or change the '#!' line to an interpreter that exists"),
            )
        };
        if !Path::new(interpreter).exists() {
            return Err(missing(interpreter));
        }
        if interpreter.ends_with("/env")
            && let Some(prog) = words.find(|w| !w.starts_with('-'))
            && !in_path(prog)
        {
            return Err(missing(prog));
        }
    }
    fs::canonicalize(&path)
        .map_err(|e| problem(format!("cannot resolve it: {e}."), "check the path".into()))
}

fn in_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(prog).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &[u8], mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn each_classic_mistake_names_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = check_bin(Path::new("./missing"), d).unwrap_err();
        assert!(
            e.message.contains("./missing: no such file")
                && e.message.contains("PATH is not searched"),
            "{e:?}"
        );
        assert!(
            check_bin(d, d)
                .unwrap_err()
                .message
                .contains("is a directory")
        );
        write(d, "noexec.py", b"#!/bin/sh\n", 0o644);
        let e = check_bin(Path::new("noexec.py"), d).unwrap_err();
        assert_eq!(e.fix, "chmod +x noexec.py");
        write(d, "plain.js", b"console.log(1)\n", 0o755);
        assert!(
            check_bin(Path::new("plain.js"), d)
                .unwrap_err()
                .message
                .contains("neither a native executable nor a script")
        );
        write(d, "crlf.py", b"#!/bin/sh\r\necho\r\n", 0o755);
        assert!(
            check_bin(Path::new("crlf.py"), d)
                .unwrap_err()
                .message
                .contains("carriage return")
        );
        write(d, "gone.py", b"#!/usr/bin/python-that-is-not-here\n", 0o755);
        let e = check_bin(Path::new("gone.py"), d).unwrap_err();
        assert!(
            e.message
                .contains("names /usr/bin/python-that-is-not-here, which does not exist"),
            "{e:?}"
        );
        write(
            d,
            "envgone.py",
            b"#!/usr/bin/env no-such-interpreter-xyz\n",
            0o755,
        );
        assert!(
            check_bin(Path::new("envgone.py"), d)
                .unwrap_err()
                .message
                .contains("no-such-interpreter-xyz")
        );
        write(d, "ok.sh", b"#!/bin/sh\necho hi\n", 0o755);
        assert!(check_bin(Path::new("ok.sh"), d).is_ok());
    }
}
