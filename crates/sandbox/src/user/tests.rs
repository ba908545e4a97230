use super::*;

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
bob:x:1001:1001::/home/bob:/bin/sh
nohome:x:1002:1002:::/bin/sh
";

const GROUP: &str = "\
root:x:0:root
daemon:x:1:
alice:x:1000:
bob:x:1001:
wheel:x:10:root,alice
audio:x:29:alice
video:x:44:bob,alice
";

fn resolve(spec: &str) -> Result<ExecUser, UserError> {
    resolve_user(spec, Some(PASSWD), Some(GROUP))
}

fn user(uid: u32, gid: u32, additional_gids: &[u32], home: &str) -> ExecUser {
    ExecUser {
        uid,
        gid,
        additional_gids: additional_gids.to_vec(),
        home: home.to_owned(),
    }
}

#[test]
fn empty_spec_is_root_looked_up_by_uid() {
    assert_eq!(resolve(""), Ok(user(0, 0, &[0, 10], "/root")));
    assert_eq!(resolve(""), resolve("0"));
    assert_eq!(resolve_user("", None, None), Ok(user(0, 0, &[], "/")));
}

#[test]
fn name_gives_ids_home_and_supplementary_groups() {
    assert_eq!(
        resolve("alice"),
        Ok(user(1000, 1000, &[10, 29, 44], "/home/alice"))
    );
    assert_eq!(resolve("bob"), Ok(user(1001, 1001, &[44], "/home/bob")));
    assert_eq!(resolve("daemon"), Ok(user(1, 1, &[], "/usr/sbin")));
}

#[test]
fn numeric_uid_in_passwd_is_that_entry() {
    assert_eq!(resolve("1000"), resolve("alice"));
    assert_eq!(resolve("0001000"), resolve("alice"));
}

#[test]
fn numeric_uid_not_in_passwd_runs_with_gid_0() {
    assert_eq!(resolve("4242"), Ok(user(4242, 0, &[], "/")));
    assert_eq!(
        resolve_user("4242", None, None),
        Ok(user(4242, 0, &[], "/"))
    );
}

#[test]
fn name_colon_group_name() {
    assert_eq!(
        resolve("alice:audio"),
        Ok(user(1000, 29, &[], "/home/alice"))
    );
}

#[test]
fn name_colon_gid_uses_the_gid_as_is() {
    assert_eq!(
        resolve("alice:4242"),
        Ok(user(1000, 4242, &[], "/home/alice"))
    );
    assert_eq!(resolve("alice:29"), Ok(user(1000, 29, &[], "/home/alice")));
}

#[test]
fn uid_colon_group_name() {
    assert_eq!(resolve("1001:wheel"), Ok(user(1001, 10, &[], "/home/bob")));
    assert_eq!(resolve("4242:wheel"), Ok(user(4242, 10, &[], "/")));
}

#[test]
fn uid_colon_gid_takes_the_fast_path() {
    assert_eq!(
        resolve("1000:1000"),
        Ok(user(1000, 1000, &[], "/home/alice"))
    );
    assert_eq!(resolve("4242:7"), Ok(user(4242, 7, &[], "/")));
    assert_eq!(
        resolve_user("4242:7", None, None),
        Ok(user(4242, 7, &[], "/"))
    );
    // BuildKit reads both halves as u32 here, so moby's int32 limit does not apply.
    assert_eq!(
        resolve_user("4294967295:4294967295", None, None),
        Ok(user(u32::MAX, u32::MAX, &[], "/"))
    );
    // `root` is 0 on the fast path, whatever the passwd file says.
    assert_eq!(
        resolve_user("root:root", None, None),
        Ok(user(0, 0, &[], "/"))
    );
    assert_eq!(
        resolve_user("root:5", Some(PASSWD), None),
        Ok(user(0, 5, &[], "/root"))
    );
}

#[test]
fn signed_numbers_are_ids_for_get_exec_user_only() {
    assert_eq!(resolve("+1000"), resolve("alice"));
    assert_eq!(resolve("+1000:+29"), Ok(user(1000, 29, &[], "/home/alice")));
    assert_eq!(resolve("-0"), resolve("root"));
}

#[test]
fn empty_halves() {
    assert_eq!(resolve("alice:"), resolve("alice"));
    assert_eq!(resolve(":"), resolve(""));
    assert_eq!(resolve(":audio"), Ok(user(0, 29, &[], "/root")));
    assert_eq!(resolve(":7"), Ok(user(0, 7, &[], "/root")));
}

#[test]
fn unknown_name_is_an_error() {
    // Golden case 059: `USER nobody` on an image whose passwd has only root.
    let err = resolve_user(
        "nobody",
        Some("root:x:0:0:root:/root:/bin/sh\n"),
        Some(GROUP),
    );
    assert_eq!(err, Err(UserError::UserNotFound("nobody".to_owned())));
    assert_eq!(
        err.map_err(|e| e.to_string()),
        Err("Unable to find user `nobody`: no matching entries in the passwd file".to_owned())
    );
    assert_eq!(
        resolve("nobody:0"),
        Err(UserError::UserNotFound("nobody".to_owned()))
    );
    assert_eq!(
        resolve("Alice"),
        Err(UserError::UserNotFound("Alice".to_owned()))
    );
}

#[test]
fn unknown_group_is_an_error() {
    let err = resolve("alice:staff");
    assert_eq!(err, Err(UserError::GroupNotFound("staff".to_owned())));
    assert_eq!(
        err.map_err(|e| e.to_string()),
        Err("Unable to find group `staff`: no matching entries in the group file".to_owned())
    );
    assert_eq!(
        resolve("4242:staff"),
        Err(UserError::GroupNotFound("staff".to_owned()))
    );
}

#[test]
fn missing_files() {
    assert_eq!(
        resolve_user("alice", None, Some(GROUP)),
        Err(UserError::NoPasswdFile("alice".to_owned()))
    );
    assert_eq!(
        resolve_user("alice:audio", Some(PASSWD), None),
        Err(UserError::NoGroupFile("audio".to_owned()))
    );
    assert_eq!(
        resolve_user("alice", Some(PASSWD), None),
        Ok(user(1000, 1000, &[], "/home/alice"))
    );
    assert_eq!(
        resolve_user("alice:29", Some(PASSWD), None),
        resolve("alice:29")
    );
    assert_eq!(
        resolve_user("alice", None, None).map_err(|e| e.to_string()),
        Err("Unable to find user `alice`: the image has no `/etc/passwd`".to_owned())
    );
    // Empty files exist: the plain "not found" errors.
    assert_eq!(
        resolve_user("alice", Some(""), Some("")),
        Err(UserError::UserNotFound("alice".to_owned()))
    );
}

#[test]
fn ids_out_of_range() {
    for spec in [
        "2147483648",
        "4294967296",
        "-1",
        "99999999999999999999999",
        "alice:2147483648",
        "alice:-5",
        "1000:4294967296",
        "nobody:-1",
    ] {
        let value = match spec.split_once(':') {
            Some((_, group)) => group,
            None => spec,
        };
        assert_eq!(
            resolve(spec),
            Err(UserError::OutOfRange(value.to_owned())),
            "{spec}"
        );
    }
    assert_eq!(resolve("2147483647"), Ok(user(MAX_ID, 0, &[], "/")));
    assert_eq!(
        UserError::OutOfRange("-1".to_owned()).to_string(),
        "User or group id `-1` is out of range: uids and gids must be between 0 and 2147483647"
    );
}

#[test]
fn names_that_are_not_numbers() {
    let passwd = "+:x:5:5::/plus:\n1a:x:6:6::/one-a:\n 7 :x:8:8::/spaced:\n";
    assert_eq!(
        resolve_user("+", Some(passwd), None),
        Ok(user(5, 5, &[], "/plus"))
    );
    assert_eq!(
        resolve_user("1a", Some(passwd), None),
        Ok(user(6, 6, &[], "/one-a"))
    );
    // Lines are trimmed, spec halves are not.
    assert_eq!(
        resolve_user(" 7 ", Some(passwd), None),
        Err(UserError::UserNotFound(" 7 ".to_owned()))
    );
    assert_eq!(
        resolve_user("alice:au:dio", Some(PASSWD), Some(GROUP)),
        Err(UserError::GroupNotFound("au:dio".to_owned()))
    );
}

#[test]
fn supplementary_groups_are_deduplicated_in_file_order() {
    let group = "\
dev:x:50:carol
ops:x:40:carol,dave
dev2:x:50:carol
carol:x:2000:carol
noise:x:60: carol,carol2,,xcarol
";
    let passwd = "carol:x:2000:2000::/home/carol:/bin/sh\n";
    assert_eq!(
        resolve_user("carol", Some(passwd), Some(group)),
        Ok(user(2000, 2000, &[50, 40, 2000], "/home/carol"))
    );
    // Only when no group is given.
    assert_eq!(
        resolve_user("carol:ops", Some(passwd), Some(group)),
        Ok(user(2000, 40, &[], "/home/carol"))
    );
    // A uid with no passwd entry has no name to look for.
    assert_eq!(
        resolve_user("2001", Some(passwd), Some(group)),
        Ok(user(2001, 0, &[], "/"))
    );
}

#[test]
fn home_defaults_to_slash() {
    assert_eq!(resolve("nohome"), Ok(user(1002, 1002, &[], "/")));
    assert_eq!(
        resolve_user("x", Some("x:x:3:3"), None),
        Ok(user(3, 3, &[], "/"))
    );
}

#[test]
fn first_entry_wins() {
    let passwd = "\
alice:x:1000:1000::/first:/bin/sh
alice:x:1500:1500::/second:/bin/sh
other:x:1000:7::/third:/bin/sh
";
    let group = "staff:x:50:\nstaff:x:51:\nlate:x:52:alice\n";
    assert_eq!(
        resolve_user("alice", Some(passwd), Some(group)),
        Ok(user(1000, 1000, &[52], "/first"))
    );
    assert_eq!(
        resolve_user("1000", Some(passwd), Some(group)),
        Ok(user(1000, 1000, &[52], "/first"))
    );
    assert_eq!(
        resolve_user("1000:1", Some(passwd), Some(group)),
        Ok(user(1000, 1, &[], "/first"))
    );
    assert_eq!(
        resolve_user("other:staff", Some(passwd), Some(group)),
        Ok(user(1000, 50, &[], "/third"))
    );
}

#[test]
fn malformed_lines_are_skipped() {
    let passwd = "\
# root:x:0:0:commented:/nope:/bin/sh
#
garbage
short:x
letters:x:abc:0::/letters:
negative:x:-1:0::/negative:
huge:x:4294967296:0::/huge:

   \t
  root:x:0:0:root:/root:/bin/sh  \r
alice:x:+1000:1000::/home/alice:/bin/sh\r
";
    let entries = parse_passwd(passwd);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["root", "alice"]);
    assert_eq!(entries[0].shell, "/bin/sh");
    assert_eq!(entries[1].uid, 1000);
    // A comment or broken line never stands in for root.
    assert_eq!(
        resolve_user("0", Some(passwd), None),
        Ok(user(0, 0, &[], "/root"))
    );
    assert_eq!(
        resolve_user("garbage", Some(passwd), None),
        Err(UserError::UserNotFound("garbage".to_owned()))
    );

    let group = "# wheel:x:10:alice\n\nbad\nbad:x\nbad:x:z:alice\nok:x:7:alice\n";
    let groups = parse_group(group);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, "ok");
    assert_eq!(
        resolve_user("alice", Some(passwd), Some(group)),
        Ok(user(1000, 1000, &[7], "/home/alice"))
    );
}

#[test]
fn parse_passwd_fields() {
    let entries = parse_passwd("a:pw:1:2:Gecos, Text:/home/a:/bin/zsh:extra\nb:x:3:4\n");
    assert_eq!(
        entries,
        [
            PasswdEntry {
                name: "a".into(),
                password: "pw".into(),
                uid: 1,
                gid: 2,
                gecos: "Gecos, Text".into(),
                home: "/home/a".into(),
                shell: "/bin/zsh".into(),
            },
            PasswdEntry {
                name: "b".into(),
                password: "x".into(),
                uid: 3,
                gid: 4,
                gecos: String::new(),
                home: String::new(),
                shell: String::new(),
            },
        ]
    );
}

#[test]
fn parse_group_fields() {
    let groups = parse_group("a:x:1:u,v,,w\nb:x:2\nc::3:\n");
    let summary: Vec<(&str, u32, Vec<&str>)> = groups
        .iter()
        .map(|g| {
            (
                g.name.as_str(),
                g.gid,
                g.members.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a", 1, vec!["u", "v", "w"]),
            ("b", 2, vec![]),
            ("c", 3, vec![])
        ]
    );
}

#[test]
fn files_read_from_a_rootfs() {
    let root = tempfile::tempdir().expect("tempdir");
    let etc = root.path().join("etc");
    std::fs::create_dir(&etc).expect("mkdir etc");
    std::fs::write(etc.join("passwd"), PASSWD).expect("write passwd");
    let passwd = std::fs::read_to_string(etc.join("passwd")).ok();
    let group = std::fs::read_to_string(etc.join("group")).ok();
    assert_eq!(group, None);
    assert_eq!(
        resolve_user("bob", passwd.as_deref(), group.as_deref()),
        Ok(user(1001, 1001, &[], "/home/bob"))
    );
}

#[test]
fn never_panics_on_arbitrary_input() {
    // A small deterministic generator over the characters the parsers care about.
    const ALPHABET: &[u8] = b"::,,##\n\n\r 0123456789+-abroot\t";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = |len: u64| -> String {
        (0..next() % len)
            .map(|_| {
                let index = usize::try_from(next() % ALPHABET.len() as u64).unwrap_or(0);
                char::from(ALPHABET.get(index).copied().unwrap_or(b'a'))
            })
            .collect()
    };
    for _ in 0..5000 {
        let spec = text(12);
        let passwd = text(200);
        let group = text(200);
        let _ = resolve_user(&spec, Some(&passwd), Some(&group));
        let _ = resolve_user(&spec, None, Some(&group));
    }
}
