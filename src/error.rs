//! One error type for the whole library.
//!
//! Every error names *what* went wrong (a [`ErrorKind`] with a stable code), and where it can:
//! the file, the on-disk structure and the byte offset. Secrets never go into an error: callers
//! put key names and file names in errors, never values.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong, as a stable, named category. `code()` gives the machine-readable name that
/// tests and `--json` output use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An operating-system I/O error (see `source`).
    Io,
    /// The file ends before a structure that must be there.
    Truncated,
    /// A signature / cookie / magic is not what the format requires.
    BadSignature,
    /// A checksum or CRC does not match the bytes it covers.
    BadChecksum,
    /// A size or count field is out of any sane range (checked before allocating anything).
    AbsurdSize,
    /// A field holds a value the format does not define.
    BadField,
    /// A block-allocation-table entry points outside the file.
    BatOutOfFile,
    /// Two block-allocation-table entries (or a block and metadata) overlap.
    BatOverlap,
    /// A block-allocation-table entry has a state the format does not define.
    UnknownBatState,
    /// A VHDX log holds entries that must be replayed before the image can be read.
    DirtyLog,
    /// An image is marked dirty or corrupt by the program that wrote it (qcow2 dirty bit).
    DirtyImage,
    /// The input is a disk or archive format this tool recognises but does not read.
    UnsupportedFormat,
    /// A differencing disk's parent could not be found.
    MissingParent,
    /// A differencing chain is deeper than the limit (or loops).
    ParentChainTooDeep,
    /// A parent does not match what the child expects (identifier or size).
    ParentMismatch,
    /// The input is valid but uses a feature this tool does not handle.
    Unsupported,
    /// The format of an input could not be recognised.
    UnknownFormat,
    /// A command-line argument or option value is not acceptable.
    InvalidArgument,
    /// The output exists and `--force` was not given.
    OutputExists,
    /// Output and input are the same file.
    SameFile,
    /// A configuration tree or document failed validation (see the message for all findings).
    InvalidConfig,
    /// A limit of the target (size, name length, ...) was exceeded.
    LimitExceeded,
    /// Something the operation needs was not found (a path inside an image, a boot config...).
    NotFound,
    /// An external program used by the launcher failed.
    External,
    /// A program or firmware file the operation needs is not installed (the message names the
    /// Debian package).
    MissingTool,
    /// The guest did not power off within the time limit (the VM was killed).
    Timeout,
    /// The guest reset (rebooted) instead of powering off.
    GuestReset,
    /// The guest kernel panicked.
    GuestPanic,
    /// The VM ended without the guest powering off (qemu died, was killed, or stopped).
    VmDied,
    /// The operation was cancelled (Ctrl-C); the VM was killed.
    Cancelled,
    /// A service refused the credentials (wrong key, expired token or SAS).
    AuthFailed,
    /// The credentials are valid but do not allow the operation (e.g. a read-only SAS).
    PermissionDenied,
    /// A remote service answered with an error (its code and message are in the message).
    Remote,
    /// A remote long-running operation ended Failed or Canceled.
    OperationFailed,
    /// The network failed (connection, timeout) after every retry.
    Network,
}

impl ErrorKind {
    /// Stable, machine-readable name.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::Truncated => "truncated",
            ErrorKind::BadSignature => "bad-signature",
            ErrorKind::BadChecksum => "bad-checksum",
            ErrorKind::AbsurdSize => "absurd-size",
            ErrorKind::BadField => "bad-field",
            ErrorKind::BatOutOfFile => "bat-out-of-file",
            ErrorKind::BatOverlap => "bat-overlap",
            ErrorKind::UnknownBatState => "unknown-bat-state",
            ErrorKind::DirtyLog => "dirty-log",
            ErrorKind::DirtyImage => "dirty-image",
            ErrorKind::UnsupportedFormat => "unsupported-format",
            ErrorKind::MissingParent => "missing-parent",
            ErrorKind::ParentChainTooDeep => "parent-chain-too-deep",
            ErrorKind::ParentMismatch => "parent-mismatch",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::UnknownFormat => "unknown-format",
            ErrorKind::InvalidArgument => "invalid-argument",
            ErrorKind::OutputExists => "output-exists",
            ErrorKind::SameFile => "same-file",
            ErrorKind::InvalidConfig => "invalid-config",
            ErrorKind::LimitExceeded => "limit-exceeded",
            ErrorKind::NotFound => "not-found",
            ErrorKind::External => "external",
            ErrorKind::MissingTool => "missing-tool",
            ErrorKind::Timeout => "timeout",
            ErrorKind::GuestReset => "guest-reset",
            ErrorKind::GuestPanic => "guest-panic",
            ErrorKind::VmDied => "vm-died",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::AuthFailed => "auth-failed",
            ErrorKind::PermissionDenied => "permission-denied",
            ErrorKind::Remote => "remote-error",
            ErrorKind::OperationFailed => "operation-failed",
            ErrorKind::Network => "network",
        }
    }
}

/// The library's error: kind, message, and where (file, structure, offset) when known.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    path: Option<PathBuf>,
    structure: Option<String>,
    // Boxed: keeps `Error` (and every `Result`) small.
    field: Option<Box<Field>>,
    offset: Option<u64>,
    source: Option<io::Error>,
}

/// A named field of an on-disk structure, and where it sits inside that structure.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    name: String,
    byte: Option<u64>,
}

/// Where an error is, as separate fields: the file, the on-disk structure, the field inside it
/// (and its byte position in the structure), and the byte offset in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location<'a> {
    /// The file.
    pub path: Option<&'a Path>,
    /// The on-disk structure (`"VHD footer"`, `"VHDX region table"`).
    pub structure: Option<&'a str>,
    /// The field of that structure (`"checksum"`, `"block size"`).
    pub field: Option<&'a str>,
    /// The field's byte position inside the structure.
    pub field_byte: Option<u64>,
    /// The byte offset in the file.
    pub offset: Option<u64>,
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a human message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            path: None,
            structure: None,
            field: None,
            offset: None,
            source: None,
        }
    }

    /// An I/O error, with the operation that failed as its message.
    pub fn io(source: io::Error, what: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Io,
            message: what.into(),
            path: None,
            structure: None,
            field: None,
            offset: None,
            source: Some(source),
        }
    }

    /// Sets the file the error is about (kept if already set: the innermost path wins).
    pub fn with_path(mut self, path: impl AsRef<Path>) -> Self {
        if self.path.is_none() {
            self.path = Some(path.as_ref().to_path_buf());
        }
        self
    }

    /// Sets the on-disk structure the error is about (kept if already set).
    pub fn with_structure(mut self, structure: impl Into<String>) -> Self {
        if self.structure.is_none() {
            self.structure = Some(structure.into());
        }
        self
    }

    /// Sets the field of the structure the error is about (kept if already set).
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        if self.field.is_none() {
            self.field = Some(Box::new(Field {
                name: field.into(),
                byte: None,
            }));
        }
        self
    }

    /// Sets the field and its byte position inside the structure (kept if already set).
    pub fn with_field_at(mut self, field: impl Into<String>, byte: usize) -> Self {
        if self.field.is_none() {
            self.field = Some(Box::new(Field {
                name: field.into(),
                byte: Some(byte as u64),
            }));
        }
        self
    }

    /// Sets the byte offset in the file (kept if already set).
    pub fn at(mut self, offset: u64) -> Self {
        if self.offset.is_none() {
            self.offset = Some(offset);
        }
        self
    }

    /// The error's category.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human message, without location.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The file the error is about, if known.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The structure the error is about, if known.
    pub fn structure(&self) -> Option<&str> {
        self.structure.as_deref()
    }

    /// The field of the structure the error is about, if known.
    pub fn field(&self) -> Option<&str> {
        self.field.as_ref().map(|f| f.name.as_str())
    }

    /// The byte offset the error is about, if known.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// Every known part of the location, as separate fields.
    pub fn location(&self) -> Location<'_> {
        Location {
            path: self.path.as_deref(),
            structure: self.structure.as_deref(),
            field: self.field(),
            field_byte: self.field.as_ref().and_then(|f| f.byte),
            offset: self.offset,
        }
    }

    /// JSON form for `--json` outputs.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": self.kind.code(),
            "message": self.message,
            "path": self.path.as_ref().map(|p| p.display().to_string()),
            "structure": self.structure,
            "field": self.field(),
            "offset": self.offset,
            "cause": self.source.as_ref().map(|s| s.to_string()),
        })
    }
}

impl Error {
    /// "structure (field field at byte B)", or as much of it as is known.
    fn where_in_structure(&self) -> Option<String> {
        let field = self.field.as_ref().map(|f| match f.byte {
            Some(b) => format!("{} field at byte {b}", f.name),
            None => format!("{} field", f.name),
        });
        match (&self.structure, field) {
            (Some(s), Some(f)) => Some(format!("{s} ({f})")),
            (Some(s), None) => Some(s.clone()),
            (None, Some(f)) => Some(f),
            (None, None) => None,
        }
    }

    /// The error without its file and code: "structure at offset N: message: cause".
    pub fn detail(&self) -> String {
        let mut d = String::new();
        if let Some(s) = self.where_in_structure() {
            d.push_str(&s);
            if let Some(o) = self.offset {
                d.push_str(&format!(" at offset {o} (0x{o:x})"));
            }
            d.push_str(": ");
        } else if let Some(o) = self.offset {
            d.push_str(&format!("at offset {o} (0x{o:x}): "));
        }
        d.push_str(&self.message);
        if let Some(src) = &self.source {
            d.push_str(&format!(": {src}"));
        }
        d
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.path {
            write!(f, "{}: ", p.display())?;
        }
        let d = self.detail();
        match &self.source {
            // The code goes before the OS cause, as it always did.
            Some(src) => {
                let without = d.strip_suffix(&format!(": {src}")).unwrap_or(&d);
                write!(f, "{without} [{}]: {src}", self.kind.code())
            }
            None => write!(f, "{d} [{}]", self.kind.code()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Adds a path to I/O results in one call: `file.read_exact(..).ctx(path, "reading footer")`.
pub trait IoContext<T> {
    /// Wraps an `io::Error` into an [`Error`] naming the path and what was being done.
    fn ctx(self, path: &Path, what: &str) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, io::Error> {
    fn ctx(self, path: &Path, what: &str) -> Result<T> {
        self.map_err(|e| Error::io(e, what).with_path(path))
    }
}

/// Shorthand to build an error: `err!(Truncated, "footer needs {} bytes", 512)`.
#[macro_export]
macro_rules! err {
    ($kind:ident, $($arg:tt)*) => {
        $crate::error::Error::new($crate::error::ErrorKind::$kind, format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_structure_offset_and_kind() {
        let e = err!(BadChecksum, "stored 0x1, computed 0x2")
            .with_structure("VHD footer")
            .at(1024)
            .with_path("/tmp/x.vhd");
        assert_eq!(
            e.to_string(),
            "/tmp/x.vhd: VHD footer at offset 1024 (0x400): stored 0x1, computed 0x2 [bad-checksum]"
        );
        assert_eq!(e.kind(), ErrorKind::BadChecksum);
    }

    #[test]
    fn field_is_a_separate_part_of_the_location() {
        let e = err!(AbsurdSize, "current size 7 is not a multiple of 512")
            .with_structure("VHD footer")
            .with_field_at("current size", 48)
            .at(1000)
            .with_path("d.vhd");
        assert_eq!(
            e.to_string(),
            "d.vhd: VHD footer (current size field at byte 48) at offset 1000 (0x3e8): \
             current size 7 is not a multiple of 512 [absurd-size]"
        );
        let l = e.location();
        assert_eq!(l.structure, Some("VHD footer"));
        assert_eq!(l.field, Some("current size"));
        assert_eq!(l.field_byte, Some(48));
        assert_eq!(l.offset, Some(1000));
        assert_eq!(l.path, Some(Path::new("d.vhd")));
        assert_eq!(e.to_json()["field"], "current size");
        let bare = err!(BadField, "x").with_field("flags");
        assert_eq!(bare.to_string(), "flags field: x [bad-field]");
    }

    #[test]
    fn innermost_location_wins() {
        let e = err!(Truncated, "short")
            .at(5)
            .at(7)
            .with_path("a")
            .with_path("b");
        assert_eq!(e.offset(), Some(5));
        assert_eq!(e.path(), Some(Path::new("a")));
    }
}
