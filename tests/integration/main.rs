//! Integration tests: each drives the real `tine` binary in a temp dir of its own.

mod app;
mod cgroup;
mod cli;
mod forwarded;
mod listeners;
mod operate;
#[cfg(feature = "python")]
mod python;
mod reload;
mod serve;
mod static_files;
mod supervise;
#[cfg(feature = "python")]
mod upgrade_abandon;
mod util;
#[cfg(feature = "python")]
mod wsgi;
