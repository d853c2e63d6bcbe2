//! Integration tests: each drives the real `tine` binary in a temp dir of its own.

mod access_log;
mod app;
#[cfg(feature = "python")]
mod asgi;
mod attacks;
mod balancer;
mod behind_haproxy;
#[cfg(feature = "python")]
mod behind_nginx;
#[cfg(feature = "python")]
mod behind_nginx_stream;
mod budget;
mod cgroup;
mod cli;
mod drain;
mod edges;
mod forwarded;
mod listeners;
mod operate;
mod proxy_protocol;
#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod reference;
mod reload;
mod serve;
mod spread;
mod static_files;
mod supervise;
mod tls;
mod trust;
#[cfg(feature = "python")]
mod upgrade_abandon;
mod util;
#[cfg(feature = "python")]
mod wsgi;
