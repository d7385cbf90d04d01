//! The install step: boots the remastered installer in a VM through the launcher and waits for
//! the guest to power off.

use super::Observer;
use super::plan::Plan;
use crate::err;
use crate::error::Result;

/// Runs the installer VM of `plan`.
pub(crate) fn install(_plan: &Plan, _index: usize, _obs: &dyn Observer) -> Result<()> {
    Err(err!(
        Unsupported,
        "the qemu launcher (src/launch) is not in this build yet"
    ))
}
