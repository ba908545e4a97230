//! Resolving a Dockerfile `USER` value to the ids a RUN process gets.
//!
//! The rules are BuildKit's (`executor/oci/user.go`), which puts a fast path in front of moby's
//! `user.GetExecUser`:
//!
//! 1. An empty value means `0` (root, looked up like any numeric uid).
//! 2. Fast path: when both halves of `user:group` are given and each is `root` or a plain decimal
//!    number that fits in a `u32`, those are the uid and gid. Nothing is looked up and there are
//!    no supplementary groups. (The home directory is still looked up by uid, as runc does when
//!    it sets `HOME`.)
//! 3. Otherwise `GetExecUser`. Each half is numeric if it looks like a Go `Atoi` number (optional
//!    sign, decimal digits); a numeric id outside `0..=2^31-1` is an error even when it would fit
//!    in a `u32`. Anything else is a name.
//!    - The user is the first passwd entry whose uid (numeric spec) or name (name spec) matches;
//!      with no user half (`:group`) it is the first entry with uid 0. A matching entry gives the
//!      uid, the primary gid and the home directory.
//!    - No matching entry: a numeric uid is used as is, with gid 0; a name is an error.
//!    - An explicit group replaces the gid: a number is used as is, a name must be in the group
//!      file (first match wins) or it is an error.
//!    - Supplementary gids exist only when no group was given and a passwd entry matched: every
//!      group whose member list names that user, in group-file order, each gid once.
//!
//! The primary gid is not added to [`ExecUser::additional_gids`], and the sandbox does not add
//! it to the `setgroups` list either: BuildKit as shipped in dockerd 20.10 (the golden corpus'
//! reference) runs `id` for a user without supplementary groups as `uid=1000(app) gid=1000(app)`.
//!
//! Parsing follows the `passwd(5)` and `group(5)` layouts. Lines are trimmed; blank lines and
//! lines starting with `#` are skipped, and so are lines without a numeric uid and gid (or gid).
//! moby instead reads a missing or non-numeric id as 0, which would make a stray line match uid 0
//! or give a broken entry root's ids; rbuild ignores such lines, as glibc does.

use std::collections::HashSet;

/// The largest uid or gid moby accepts in a `USER` value (it requires ids to fit in an `int32`).
pub const MAX_ID: u32 = (1 << 31) - 1;

/// What a RUN process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, in group-file order, without duplicates. Does not necessarily
    /// contain [`ExecUser::gid`].
    pub additional_gids: Vec<u32>,
    /// The passwd entry's home directory; `/` when there is no entry or its home field is empty.
    pub home: String,
}

/// One well-formed line of `/etc/passwd`: `name:password:uid:gid:gecos:home:shell`.
///
/// The fields after `gid` may be missing (they are then empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub password: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

/// One well-formed line of `/etc/group`: `name:password:gid:member,member`.
///
/// The member list may be missing; empty member names are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub password: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Why a `USER` value cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("Unable to find user `{0}`: no matching entries in the passwd file")]
    UserNotFound(String),
    #[error("Unable to find user `{0}`: the image has no `/etc/passwd`")]
    NoPasswdFile(String),
    #[error("Unable to find group `{0}`: no matching entries in the group file")]
    GroupNotFound(String),
    #[error("Unable to find group `{0}`: the image has no `/etc/group`")]
    NoGroupFile(String),
    #[error(
        "User or group id `{0}` is out of range: uids and gids must be between 0 and {MAX_ID}"
    )]
    OutOfRange(String),
}

/// Resolves a `USER` value (`""`, `user`, `uid`, `user:group`, `uid:gid`, `user:gid`,
/// `uid:group`) against the text of the rootfs' `/etc/passwd` and `/etc/group` (`None` when the
/// file does not exist). See the module documentation for the rules.
pub fn resolve_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ExecUser, UserError> {
    let spec = if spec.is_empty() { "0" } else { spec };
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let (user_part, group_part) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };

    if let Some((uid, gid)) = group_part.and_then(|g| Some((fast_id(user_part)?, fast_id(g)?))) {
        let home = users.iter().find(|u| u.uid == uid).map(|u| u.home.as_str());
        return Ok(ExecUser {
            uid,
            gid,
            additional_gids: Vec::new(),
            home: home_or_root(home),
        });
    }

    let user_arg = Arg::parse(user_part)?;
    let group_arg = Arg::parse(group_part.unwrap_or(""))?;

    let matched = match user_arg {
        Arg::Absent => users.iter().find(|u| u.uid == 0),
        Arg::Id(uid) => users.iter().find(|u| u.uid == uid),
        Arg::Name(name) => users.iter().find(|u| u.name == name),
    };
    let mut resolved = ExecUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: home_or_root(None),
    };
    match (matched, user_arg) {
        (Some(entry), _) => {
            resolved.uid = entry.uid;
            resolved.gid = entry.gid;
            resolved.home = home_or_root(Some(&entry.home));
        }
        (None, Arg::Id(uid)) => resolved.uid = uid,
        (None, Arg::Absent) => {}
        (None, Arg::Name(name)) if passwd.is_none() => {
            return Err(UserError::NoPasswdFile(name.to_owned()))
        }
        (None, Arg::Name(name)) => return Err(UserError::UserNotFound(name.to_owned())),
    }

    let groups = group.map(parse_group).unwrap_or_default();
    match group_arg {
        Arg::Id(gid) => resolved.gid = gid,
        Arg::Name(name) => match groups.iter().find(|g| g.name == name) {
            Some(entry) => resolved.gid = entry.gid,
            None if group.is_none() => return Err(UserError::NoGroupFile(name.to_owned())),
            None => return Err(UserError::GroupNotFound(name.to_owned())),
        },
        Arg::Absent => {
            if let Some(entry) = matched.filter(|e| !e.name.is_empty()) {
                resolved.additional_gids = member_gids(&groups, &entry.name);
            }
        }
    }
    Ok(resolved)
}

/// Parses `/etc/passwd` text, keeping file order and skipping blank, comment and malformed lines.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    records(text)
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let password = fields.next()?;
            let uid = file_id(fields.next()?)?;
            let gid = file_id(fields.next()?)?;
            let mut rest = || fields.next().unwrap_or("").to_owned();
            Some(PasswdEntry {
                name: name.to_owned(),
                password: password.to_owned(),
                uid,
                gid,
                gecos: rest(),
                home: rest(),
                shell: rest(),
            })
        })
        .collect()
}

/// Parses `/etc/group` text, keeping file order and skipping blank, comment and malformed lines.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    records(text)
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let password = fields.next()?;
            let gid = file_id(fields.next()?)?;
            let members = fields
                .next()
                .unwrap_or("")
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect();
            Some(GroupEntry {
                name: name.to_owned(),
                password: password.to_owned(),
                gid,
                members,
            })
        })
        .collect()
}

/// The lines of a passwd or group file that can hold an entry.
fn records(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// An id field in a passwd or group file.
fn file_id(field: &str) -> Option<u32> {
    field.parse().ok()
}

/// One half of `user:group` as BuildKit's fast path reads it: `root` or a plain decimal `u32`.
fn fast_id(part: &str) -> Option<u32> {
    if part == "root" {
        return Some(0);
    }
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

fn home_or_root(home: Option<&str>) -> String {
    match home {
        Some(home) if !home.is_empty() => home.to_owned(),
        _ => "/".to_owned(),
    }
}

/// The gids of the groups listing `user` as a member, in file order, each once.
fn member_gids(groups: &[GroupEntry], user: &str) -> Vec<u32> {
    let mut seen = HashSet::new();
    groups
        .iter()
        .filter(|g| g.members.iter().any(|m| m == user))
        .map(|g| g.gid)
        .filter(|gid| seen.insert(*gid))
        .collect()
}

/// One half of `user:group` as `GetExecUser` reads it.
#[derive(Debug, Clone, Copy)]
enum Arg<'a> {
    Absent,
    Id(u32),
    Name(&'a str),
}

impl<'a> Arg<'a> {
    /// A part that looks like a Go `Atoi` number (optional sign, decimal digits) is an id and
    /// must lie in `0..=MAX_ID`; any other non-empty part is a name.
    fn parse(part: &'a str) -> Result<Arg<'a>, UserError> {
        if part.is_empty() {
            return Ok(Arg::Absent);
        }
        let digits = part.strip_prefix(['+', '-']).unwrap_or(part);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Arg::Name(part));
        }
        part.parse::<i64>()
            .ok()
            .and_then(|id| u32::try_from(id).ok())
            .filter(|id| *id <= MAX_ID)
            .map(Arg::Id)
            .ok_or_else(|| UserError::OutOfRange(part.to_owned()))
    }
}

#[cfg(test)]
mod tests;
