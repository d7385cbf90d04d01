//! `isotool build BUILD.toml`: from a build file to released artifacts, replacing `packer build`.
//!
//! [`file`](mod@file) reads and checks the build file (TOML, Packer's field names), [`plan`] turns it into
//! ordered steps with inputs and outputs, [`pipeline`] runs them: verify the ISO's checksum ->
//! remaster -> provisioning DVD (+ NoCloud seed / Azure custom data) -> blank disk -> install in a
//! VM -> convert, validate and sum per provider -> publish
//! `OUTPUT/VERSION/NAME/PROVIDER/NAME-VERSION_PROVIDER.EXT` + `SHA256SUMS`.
//!
//! The library never draws: it sends [`Event`]s to an [`Observer`] (the CLI draws them).

pub mod apart;
pub mod file;
mod install;
pub mod pipeline;
pub mod plan;
pub mod provider;
pub mod recipe;
pub mod seed;
pub mod sums;

pub use file::{BuildSpec, load};
pub use pipeline::{BuildReport, RunOptions, run};
pub use plan::{Plan, Step, StepKind};
pub use provider::Provider;

use std::time::Duration;

/// What a running build tells its observer.
#[derive(Debug)]
pub enum Event<'a> {
    /// The build starts with this plan.
    Started(&'a Plan),
    /// Step `index` starts.
    StepStarted {
        /// Index in the plan.
        index: usize,
        /// The step.
        step: &'a Step,
    },
    /// The current step's own progress, in bytes (`total` 0 when unknown).
    StepProgress {
        /// Index in the plan.
        index: usize,
        /// Done so far.
        done: u64,
        /// Total.
        total: u64,
    },
    /// A status line of the current step (the VM's elapsed time and last serial line).
    StepStatus {
        /// Index in the plan.
        index: usize,
        /// The line.
        line: &'a str,
    },
    /// A note for the user (not an error).
    Note {
        /// Index in the plan.
        index: usize,
        /// The message.
        message: &'a str,
    },
    /// Step `index` finished.
    StepFinished {
        /// Index in the plan.
        index: usize,
        /// The step.
        step: &'a Step,
        /// How long it took.
        elapsed: Duration,
    },
}

/// Receives a build's events.
pub trait Observer: Sync {
    /// One event.
    fn event(&self, e: &Event<'_>);
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {
    fn event(&self, _e: &Event<'_>) {}
}
