//! warabifs: a FUSE file system over a Mochi Warabi pmem pool.
//!
//! Layers, each using only the one below: [`fuse`] (thin fuser adapter) -> [`fs`]
//! (file-system semantics) -> [`store`] (the on-pool format) -> [`pmem`] (libpmemobj).
//! [`config`] and [`mount`] turn command-line options into a live mount; [`remount`]
//! changes a live one.

pub mod cli;
pub mod config;
pub mod fault;
pub mod fs;
pub mod fuse;
pub mod logging;
pub mod mount;
pub mod pmem;
pub mod push;
pub mod remount;
pub mod store;
pub mod tools;
