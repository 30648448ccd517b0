//! A minimal POSIX ustar writer: how a run's files travel to the node in one stream, read
//! there by `tar -x` (no value of the data is ever part of a command line).

/// A tar archive being built in memory.
#[derive(Debug, Default)]
pub struct Archive {
    bytes: Vec<u8>,
}

const BLOCK: usize = 512;

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory entry. `path` must be a relative path of at most 99 bytes.
    pub fn dir(&mut self, path: &str, mode: u32) {
        self.entry(path, mode, b'5', &[]);
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, mode: u32, contents: &[u8]) {
        self.entry(path, mode, b'0', contents);
    }

    /// The archive with its two closing zero blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0; 2 * BLOCK]);
        self.bytes
    }

    fn entry(&mut self, path: &str, mode: u32, kind: u8, contents: &[u8]) {
        assert!(
            !path.is_empty() && path.len() < 100 && !path.starts_with('/'),
            "tar entry name {path:?} must be relative and shorter than 100 bytes"
        );
        let mut header = [0u8; BLOCK];
        header[..path.len()].copy_from_slice(path.as_bytes());
        octal(&mut header[100..108], u64::from(mode & 0o7777));
        octal(&mut header[108..116], 0); // uid
        octal(&mut header[116..124], 0); // gid
        octal(&mut header[124..136], contents.len() as u64);
        octal(&mut header[136..148], 0); // mtime
        header[156] = kind;
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[265..269].copy_from_slice(b"root");
        header[297..301].copy_from_slice(b"root");
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        let digits = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(digits.as_bytes());
        self.bytes.extend_from_slice(&header);
        self.bytes.extend_from_slice(contents);
        let pad = (BLOCK - contents.len() % BLOCK) % BLOCK;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
    }
}

/// Writes `value` as zero-padded octal filling `field` but its last byte (a NUL).
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    assert!(text.len() == width, "{value} does not fit a tar field");
    field[..width].copy_from_slice(text.as_bytes());
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    use std::{io::Write, process::Stdio};

    use super::*;

    #[test]
    fn gnu_tar_reads_it_back_exactly() {
        let mut archive = Archive::new();
        archive.dir("scripts", 0o700);
        archive.file("scripts/10-a.sh", 0o700, b"echo a\n");
        archive.file("empty", 0o600, b"");
        let big: Vec<u8> = (0..2000u32).map(|i| (i % 251) as u8).collect();
        archive.file("big.bin", 0o600, &big);
        let bytes = archive.finish();
        assert_eq!(bytes.len() % BLOCK, 0);

        let dir = tempfile::tempdir().unwrap();
        let mut tar = std::process::Command::new("tar")
            .arg("-x")
            .arg("-f")
            .arg("-")
            .arg("-C")
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        tar.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = tar.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let read = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
        assert_eq!(read("scripts/10-a.sh"), b"echo a\n");
        assert_eq!(read("empty"), b"");
        assert_eq!(read("big.bin"), big);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("scripts/10-a.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
