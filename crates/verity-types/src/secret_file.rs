//! Key files: readable by their owner only, and never half-written.

use std::io::Write as _;
use std::path::Path;

/// Writes `contents` to `path` readable and writable by the owner only (0600 on Unix), creating
/// the directory if needed. The bytes go to a temporary file that is synced and then renamed
/// over `path`, so a crash leaves the old key or the new one, never a torn one; and a file that
/// existed with wider permissions is replaced, not reused.
pub fn write_secret(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let with_path =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(with_path)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = Path::new(&temporary);
    let _ = std::fs::remove_file(temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(temporary).map_err(with_path)?;
    file.write_all(contents).map_err(with_path)?;
    file.sync_all().map_err(with_path)?;
    std::fs::rename(temporary, path).map_err(with_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_a_world_readable_file_with_an_owner_only_one() {
        let dir = std::env::temp_dir().join(format!("verity-secret-{}", std::process::id()));
        let path = dir.join("keys").join("account.key");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        write_secret(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!dir.join("keys").join("account.key.tmp").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
