//! What users ask of disk images, over every format: recognise one from its content
//! ([`probe`]), open it with its parent chain ([`mod@open`]), convert it ([`convert`]), check it
//! against a platform ([`validate`]).
//!
//! This is the top of the disk layers: it names the formats ([`crate::vhd`], [`crate::vhdx`]);
//! the formats name only [`crate::disk`] below them.

pub mod convert;
pub mod open;
pub mod probe;
pub mod validate;

pub use open::{
    MAX_PARENT_DEPTH, Opener, open_image, open_image_as, open_image_at_depth, open_image_with_files,
};
pub use probe::{Format, probe_format};
