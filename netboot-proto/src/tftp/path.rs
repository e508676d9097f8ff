//! The one place a requested TFTP file name becomes a path. Audited by its tests; every file
//! source calls it before touching anything.
//!
//! Rules: `\` becomes `/` (Windows-built PXE configs), leading `/` are stripped (clients send
//! absolute-looking names), empty and `.` components are dropped, and the name is refused if any
//! component is `..`, or it contains NUL or another control character, or it ends up empty or
//! longer than 1024 bytes. Percent signs are not decoded: `..%2f` stays a literal (and
//! nonexistent) name. A name refused for its length is answered "file not found" (no file has
//! such a name); the others are access violations. Symlinks, file types and names the kernel
//! finds too long are the directory source's business (`source::DirSource`): all "not found".

/// Why a name is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Nothing left after dropping empty, `.` and leading-`/` components.
    #[error("empty file name")]
    Empty,
    /// Longer than 1024 bytes (the length it had); answered "file not found".
    #[error("file name too long ({0} bytes)")]
    TooLong(usize),
    /// A NUL or another control character (Unicode `Cc`) anywhere in the name.
    #[error("control character in file name")]
    Control,
    /// A `..` component (after `\` became `/`).
    #[error("'..' in file name")]
    Parent,
}

const MAX_LEN: usize = 1024;

/// Returns the normalized relative path (components joined by `/`).
pub fn normalize(requested: &str) -> Result<String, PathError> {
    if requested.len() > MAX_LEN {
        return Err(PathError::TooLong(requested.len()));
    }
    if requested.chars().any(char::is_control) {
        return Err(PathError::Control);
    }
    let unified = requested.replace('\\', "/");
    let mut parts = Vec::new();
    for c in unified.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(PathError::Parent),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(PathError::Empty);
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names() {
        for (input, want) in [
            ("snponly.efi", "snponly.efi"),
            ("/snponly.efi", "snponly.efi"),
            ("//boot/./x86/undionly.kpxe", "boot/x86/undionly.kpxe"),
            ("boot\\grub\\grubx64.efi", "boot/grub/grubx64.efi"),
            (
                "pxelinux.cfg/01-52-54-00-12-34-56",
                "pxelinux.cfg/01-52-54-00-12-34-56",
            ),
            ("a..b", "a..b"),
            ("..%2f..%2fetc%2fpasswd", "..%2f..%2fetc%2fpasswd"),
            ("%2e%2e/etc/passwd", "%2e%2e/etc/passwd"),
        ] {
            assert_eq!(normalize(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn traversal_and_junk_refused() {
        for (input, want) in [
            ("../etc/passwd", PathError::Parent),
            ("/../etc/passwd", PathError::Parent),
            ("..\\..\\windows", PathError::Parent),
            ("boot/../../etc/shadow", PathError::Parent),
            ("a/..", PathError::Parent),
            ("..", PathError::Parent),
            ("a\0b", PathError::Control),
            ("a\nb", PathError::Control),
            ("", PathError::Empty),
            ("/", PathError::Empty),
            ("./././", PathError::Empty),
        ] {
            assert_eq!(normalize(input), Err(want), "{input:?}");
        }
        assert_eq!(normalize(&"a".repeat(2000)), Err(PathError::TooLong(2000)));
    }
}
