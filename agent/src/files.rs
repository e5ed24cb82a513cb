//! Sandbox files over HTTP, as Mesos' /files endpoints: browse a directory, read part of a
//! file, download a whole one. Every path is confined to the sandboxes
//! (`<work_dir>/slaves`): it is resolved (`..`, symlinks) before use, and one that ends
//! up outside is refused with 403, as is a path that does not exist (404) or has the
//! wrong kind (400).

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The most `/files/read` returns at once (Mesos pages sandbox files the same way).
pub const MAX_READ: u64 = 1024 * 1024;

/// Why a files request is refused: HTTP status and a message naming the path.
#[derive(Debug, PartialEq)]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

fn refused(status: u16, message: String) -> Refused {
    Refused { status, message }
}

/// One entry of `/files/browse`, in the shape of Mesos' FileInfo.
#[derive(Debug, Serialize, PartialEq)]
pub struct FileInfo {
    pub path: String,
    pub size: u64,
    pub mode: u32,
    pub mtime: i64,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub dir: bool,
}

/// A part of a file, as `/files/read` answers: `data` from byte `offset`.
#[derive(Debug, Serialize, PartialEq)]
pub struct Chunk {
    pub data: String,
    pub offset: u64,
}

/// `path`, resolved, if it lies inside `root` (also resolved).
pub fn confine(root: &Path, path: &str) -> Result<PathBuf, Refused> {
    if path.is_empty() {
        return Err(refused(400, "no path given (?path=...)".to_owned()));
    }
    let root = root.canonicalize().map_err(|e| {
        refused(
            404,
            format!("no sandboxes here yet ({}): {e}", root.display()),
        )
    })?;
    let asked = Path::new(path);
    let asked = if asked.is_absolute() {
        asked.to_path_buf()
    } else {
        root.join(asked)
    };
    let resolved = asked
        .canonicalize()
        .map_err(|e| refused(404, format!("'{path}': {e}")))?;
    if !resolved.starts_with(&root) {
        return Err(refused(
            403,
            format!(
                "'{path}' is outside the sandboxes ({}); only sandbox files are served",
                root.display()
            ),
        ));
    }
    Ok(resolved)
}

fn info(path: &Path) -> std::io::Result<FileInfo> {
    let meta = std::fs::symlink_metadata(path)?;
    Ok(FileInfo {
        path: path.display().to_string(),
        size: meta.len(),
        mode: meta.mode(),
        mtime: meta.mtime(),
        nlink: meta.nlink(),
        uid: meta.uid(),
        gid: meta.gid(),
        dir: meta.is_dir(),
    })
}

/// The entries of directory `path`, by name.
pub fn browse(root: &Path, path: &str) -> Result<Vec<FileInfo>, Refused> {
    let dir = confine(root, path)?;
    if !dir.is_dir() {
        return Err(refused(400, format!("'{path}' is not a directory")));
    }
    let io = |e: std::io::Error| refused(500, format!("'{path}': {e}"));
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        entries.push(info(&entry.map_err(io)?.path()).map_err(io)?);
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// Up to `length` bytes (at most [`MAX_READ`]) of file `path` from `offset`; an offset of
/// `None` answers the file's size only, as Mesos' `offset=-1`. Bytes that are not UTF-8
/// are replaced.
pub fn read(
    root: &Path,
    path: &str,
    offset: Option<u64>,
    length: Option<u64>,
) -> Result<Chunk, Refused> {
    let file = confine(root, path)?;
    if !file.is_file() {
        return Err(refused(400, format!("'{path}' is not a file")));
    }
    let io = |e: std::io::Error| refused(500, format!("'{path}': {e}"));
    let mut handle = std::fs::File::open(&file).map_err(io)?;
    let size = handle.metadata().map_err(io)?.len();
    let Some(offset) = offset else {
        return Ok(Chunk {
            data: String::new(),
            offset: size,
        });
    };
    let offset = offset.min(size);
    let length = length.unwrap_or(MAX_READ).min(MAX_READ);
    handle.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut bytes = Vec::new();
    handle.take(length).read_to_end(&mut bytes).map_err(io)?;
    Ok(Chunk {
        data: String::from_utf8_lossy(&bytes).into_owned(),
        offset,
    })
}

/// The whole of file `path`, and its name, for `/files/download`.
pub fn download(root: &Path, path: &str) -> Result<(String, Vec<u8>), Refused> {
    let file = confine(root, path)?;
    if !file.is_file() {
        return Err(refused(400, format!("'{path}' is not a file")));
    }
    let bytes = std::fs::read(&file).map_err(|e| refused(500, format!("'{path}': {e}")))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((name, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// work/slaves/a/sandbox/{stdout, sub/x} and, outside, work/secret; a symlink in the
    /// sandbox points at the secret.
    fn layout() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("slaves");
        let sandbox = root.join("a/sandbox");
        std::fs::create_dir_all(sandbox.join("sub")).unwrap();
        std::fs::write(sandbox.join("stdout"), "hello\nworld\n").unwrap();
        std::fs::write(sandbox.join("sub/x"), "x").unwrap();
        std::fs::write(work.path().join("secret"), "no").unwrap();
        std::os::unix::fs::symlink(work.path().join("secret"), sandbox.join("escape")).unwrap();
        (work, root, sandbox)
    }

    #[test]
    fn reads_browses_and_downloads_inside_the_sandboxes() {
        let (_work, root, sandbox) = layout();
        let stdout = sandbox.join("stdout").display().to_string();
        let chunk = read(&root, &stdout, Some(6), Some(100)).unwrap();
        assert_eq!(
            chunk,
            Chunk {
                data: "world\n".into(),
                offset: 6
            }
        );
        assert_eq!(read(&root, &stdout, None, None).unwrap().offset, 12);
        assert_eq!(
            read(&root, &stdout, Some(0), Some(5)).unwrap().data,
            "hello"
        );
        let listing = browse(&root, &sandbox.display().to_string()).unwrap();
        let names: Vec<&str> = listing
            .iter()
            .map(|f| f.path.rsplit('/').next().unwrap_or(""))
            .collect();
        // The symlink is listed; following it is what is refused.
        assert_eq!(names, ["escape", "stdout", "sub"]);
        assert!(listing[2].dir);
        let (name, bytes) = download(&root, &sandbox.join("sub/x").display().to_string()).unwrap();
        assert_eq!((name.as_str(), bytes.as_slice()), ("x", b"x".as_slice()));
    }

    #[test]
    fn paths_that_escape_are_forbidden() {
        let (work, root, sandbox) = layout();
        let dotdot = format!("{}/../../../secret", sandbox.display());
        assert_eq!(read(&root, &dotdot, Some(0), None).unwrap_err().status, 403);
        let link = sandbox.join("escape").display().to_string();
        let err = read(&root, &link, Some(0), None).unwrap_err();
        assert_eq!(err.status, 403, "{err:?}");
        assert!(err.message.contains("outside the sandboxes"), "{err:?}");
        assert_eq!(download(&root, &link).unwrap_err().status, 403);
        let outside = work.path().display().to_string();
        assert_eq!(browse(&root, &outside).unwrap_err().status, 403);
        assert_eq!(browse(&root, "/etc").unwrap_err().status, 403);
        assert_eq!(
            read(&root, "/nope/none", Some(0), None).unwrap_err().status,
            404
        );
        let dir = sandbox.display().to_string();
        assert_eq!(read(&root, &dir, Some(0), None).unwrap_err().status, 400);
        assert_eq!(read(&root, "", Some(0), None).unwrap_err().status, 400);
    }
}
