use super::*;
use crate::parser::parse;

fn first_after_from(src: &str) -> Result<Instruction, Diagnostic> {
    let ast = parse(&format!("FROM a\n{src}")).expect("parses");
    parse_instruction(&ast.children[1])
}

#[test]
fn unknown_instruction_suggests() {
    let err = first_after_from("RUNN x\n").expect_err("unknown");
    assert!(err.message.contains("RUNN"));
    assert_eq!(err.expected.as_deref(), Some("`RUN`?"));
}

#[test]
fn unknown_flag_names_the_flag_and_points_at_it() {
    let err = first_after_from("COPY --form=a x y\n").expect_err("unknown flag");
    assert!(err.message.contains("--form"), "{}", err.message);
    assert_eq!((err.position.line, err.position.column), (2, 6));
    assert!(err.expected.as_deref().unwrap_or("").contains("--from"));
}

#[test]
fn copy_flags_and_heredoc_sources() {
    let ast = parse("FROM a\nCOPY --from=b --chown=1:2 --chmod=755 --link --exclude=*.md --exclude=x <<EOF s /d/\nhi\nEOF\n")
        .expect("parses");
    let Instruction::Copy(copy) = parse_instruction(&ast.children[1]).expect("copy") else {
        panic!("not COPY");
    };
    assert_eq!(copy.from.as_deref(), Some("b"));
    assert_eq!(copy.chown.as_deref(), Some("1:2"));
    assert!(copy.link);
    assert_eq!(copy.excludes, ["*.md", "x"]);
    assert_eq!(copy.sources, ["s"]);
    assert_eq!(copy.inline_sources[0].content, "hi\n");
    assert_eq!(copy.dest, "/d/");
}

#[test]
fn add_only_flags() {
    assert!(first_after_from("ADD --checksum=sha256:00 --keep-git-dir=true x y\n").is_ok());
    assert!(first_after_from("COPY --checksum=sha256:00 x y\n").is_err());
    assert!(first_after_from("ADD --from=a x y\n").is_err());
}

#[test]
fn bool_flag_values() {
    assert!(first_after_from("COPY --link=false x y\n").is_ok());
    assert!(first_after_from("COPY --link=maybe x y\n").is_err());
    assert!(first_after_from("COPY --link= x y\n").is_err());
    assert!(first_after_from("COPY --from x y\n").is_err());
    assert!(first_after_from("COPY --from=a --from=b x y\n").is_err());
}

#[test]
fn copy_needs_destination() {
    assert!(first_after_from("COPY x\n").is_err());
}

#[test]
fn from_forms() {
    let ast = parse("FROM --platform=linux/arm64 img AS Build\n").expect("parses");
    let Instruction::From(from) = parse_instruction(&ast.children[0]).expect("from") else {
        panic!("not FROM");
    };
    assert_eq!(from.alias.as_deref(), Some("build"));
    assert_eq!(from.platform.as_deref(), Some("linux/arm64"));
    for bad in ["FROM a b\n", "FROM a AS 1x\n", "FROM a AS b c\n", "FROM\n"] {
        let ast = parse(bad).expect("parses");
        assert!(parse_instruction(&ast.children[0]).is_err(), "{bad}");
    }
}

#[test]
fn run_modes() {
    let Instruction::Run(run) = first_after_from(
        "RUN --network=none --security=insecure --mount=type=cache,target=/c make\n",
    )
    .expect("run") else {
        panic!("not RUN");
    };
    assert_eq!(run.network, Some(NetworkMode::None));
    assert_eq!(run.security, Some(SecurityMode::Insecure));
    assert_eq!(run.mounts, ["type=cache,target=/c"]);
    assert!(run.command.shell_form);
    assert!(first_after_from("RUN --network=bridge x\n").is_err());
    assert!(first_after_from("RUN --device=x x\n").is_err());
}

#[test]
fn exec_and_shell_forms() {
    assert_eq!(
        first_after_from("CMD [\"a\", \"b\"]\n").expect("cmd"),
        Instruction::Cmd(Command {
            args: vec!["a".into(), "b".into()],
            shell_form: false
        })
    );
    assert!(first_after_from("SHELL /bin/sh -c\n").is_err());
    assert!(first_after_from("SHELL [\"/bin/bash\", \"-c\"]\n").is_ok());
}

#[test]
fn healthcheck_forms() {
    let Instruction::Healthcheck(h) = first_after_from(
        "HEALTHCHECK --interval=5m --timeout=3s --retries=3 CMD curl -f http://localhost/\n",
    )
    .expect("hc") else {
        panic!("not HEALTHCHECK")
    };
    assert_eq!(h.test, ["CMD-SHELL", "curl -f http://localhost/"]);
    assert_eq!(h.interval, 300_000_000_000);
    assert_eq!(h.retries, 3);
    assert!(first_after_from("HEALTHCHECK NONE\n").is_ok());
    assert!(first_after_from("HEALTHCHECK NONE x\n").is_err());
    assert!(first_after_from("HEALTHCHECK --interval=1us CMD x\n").is_err());
    assert!(first_after_from("HEALTHCHECK --retries=-1 CMD x\n").is_err());
    assert!(first_after_from("HEALTHCHECK --bogus=1 CMD x\n").is_err());
    assert!(first_after_from("HEALTHCHECK CMD\n").is_err());
    assert!(first_after_from("HEALTHCHECK FOO x\n").is_err());
}

#[test]
fn onbuild_rules() {
    assert_eq!(
        first_after_from("ONBUILD RUN echo hi\n").expect("onbuild"),
        Instruction::Onbuild {
            expression: "RUN echo hi".into()
        }
    );
    assert!(first_after_from("ONBUILD ONBUILD RUN x\n").is_err());
    assert!(first_after_from("ONBUILD FROM x\n").is_err());
}

#[test]
fn env_arg_label() {
    assert_eq!(
        first_after_from("ARG a b=2\n").expect("arg"),
        Instruction::Arg {
            args: vec![
                ArgDecl {
                    name: "a".into(),
                    default: None
                },
                ArgDecl {
                    name: "b".into(),
                    default: Some("2".into())
                }
            ]
        }
    );
    assert!(first_after_from("ARG =x\n").is_err());
    assert!(first_after_from("ENV =x\n").is_err());
    assert!(first_after_from("USER\n").is_err());
    assert!(first_after_from("VOLUME\n").is_err());
}
