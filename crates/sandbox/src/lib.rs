//! rbuild-sandbox: where RUN steps will execute.
//!
//! The sandbox will run each RUN step in fresh Linux namespaces (issue 4): a mount namespace over
//! the step's overlay view, its own PID, IPC and UTS namespaces, an optional network namespace,
//! and the step's user, working directory and environment. Every syscall will go through one
//! small trait so the order of namespace and mount calls can be tested without root.
//!
//! Today the crate holds only the piece of that work that needs no syscalls at all: [`user`],
//! which turns a Dockerfile `USER` value plus the rootfs' `/etc/passwd` and `/etc/group` into the
//! uid, gid, supplementary gids and home directory the process will get, following the rules
//! BuildKit applies (its own fast path in front of moby's `GetExecUser`). It is pure: the caller
//! reads the two files from the rootfs (safely, inside the root, with a size cap) and passes
//! their text in, so every rule is unit-tested on strings.

pub mod user;
