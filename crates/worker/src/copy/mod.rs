//! COPY and ADD: selecting sources, keying them by content, writing them into a rootfs.

pub mod checksum;
pub mod direct;
pub mod reuse;
pub mod select;
pub mod write;
