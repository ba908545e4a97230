use super::*;
use crate::parser::parse;

fn plan(src: &str, args: &[(&str, &str)], target: Option<&str>) -> Result<BuildPlan, Diagnostic> {
    let ast = parse(src).expect("parses");
    let options = BuildOptions {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target: target.map(str::to_string),
        target_platform: Platform::parse("linux/amd64").expect("platform"),
        build_platform: Platform::parse("linux/arm64").expect("platform"),
        base_images: BTreeMap::new(),
    };
    resolve(&ast, &options)
}

fn env_of(step: &Step) -> Vec<(String, String)> {
    step.state.as_ref().expect("state").env.pairs().to_vec()
}

#[test]
fn meta_args_only_in_from() {
    let p = plan(
        "ARG TAG=1.0\nARG IMG=busybox:${TAG}\nFROM $IMG\nRUN echo $TAG\nARG TAG\nRUN echo $TAG\n",
        &[],
        None,
    )
    .expect("plan");
    assert_eq!(
        p.stages[0].base,
        Source::Image {
            reference: "busybox:1.0".into()
        }
    );
    let steps = &p.stages[0].steps;
    assert!(!env_of(&steps[0]).iter().any(|(k, _)| k == "TAG"));
    assert!(env_of(&steps[2]).contains(&("TAG".into(), "1.0".into())));
}

#[test]
fn build_args_override_defaults_and_env_wins_when_later() {
    let p = plan(
        "FROM scratch\nARG V=default\nRUN a\nENV V=env\nRUN b\n",
        &[("V", "cli")],
        None,
    )
    .expect("plan");
    let steps = &p.stages[0].steps;
    assert!(env_of(&steps[1]).contains(&("V".into(), "cli".into())));
    assert!(env_of(&steps[3]).contains(&("V".into(), "env".into())));
    assert!(p.warnings.is_empty());
}

#[test]
fn undeclared_build_arg_warns_and_proxy_passes() {
    let p = plan(
        "FROM scratch\nRUN a\n",
        &[("NOPE", "1"), ("HTTP_PROXY", "http://p")],
        None,
    )
    .expect("plan");
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(
        p.proxy_env,
        [("HTTP_PROXY".to_string(), "http://p".to_string())]
    );
}

#[test]
fn predefined_platform_args() {
    let p = plan(
        "FROM --platform=$BUILDPLATFORM scratch AS b\nARG TARGETARCH\nENV A=$TARGETARCH\n",
        &[],
        None,
    )
    .expect("plan");
    assert_eq!(p.stages[0].platform.as_deref(), Some("linux/arm64"));
    let Instruction::Env { vars } = &p.stages[0].steps[1].instruction else {
        panic!("not ENV")
    };
    assert_eq!(vars[0].value, "amd64");
}

#[test]
fn expansion_of_words_and_workdir() {
    let p = plan(
        "FROM scratch\nENV D=/app N=x\nWORKDIR $D\nWORKDIR sub/../lib\nCOPY --chown=$N:$N a${N} ./\nEXPOSE 80 ${P:-8080}/udp\nRUN echo $D\n",
        &[],
        None,
    )
    .expect("plan");
    let steps = &p.stages[0].steps;
    assert_eq!(steps[2].state.as_ref().expect("state").workdir, "/app/lib");
    let Instruction::Copy(copy) = &steps[3].instruction else {
        panic!("not COPY")
    };
    assert_eq!(copy.chown.as_deref(), Some("x:x"));
    assert_eq!(copy.sources, ["ax"]);
    assert!(plan("FROM scratch\nEXPOSE ${N:-8080}/udp\n", &[], None).is_ok());
    let Instruction::Run(run) = &steps[5].instruction else {
        panic!("not RUN")
    };
    assert_eq!(run.command.args, ["echo $D"]);
}

#[test]
fn stages_by_name_index_and_pruning() {
    let src = "FROM scratch AS base\nFROM base AS build\nRUN make\nFROM scratch AS unused\nRUN nope\nFROM scratch\nCOPY --from=build /a /a\nCOPY --from=0 /b /b\n";
    let p = plan(src, &[], None).expect("plan");
    assert_eq!(p.target, 3);
    assert_eq!(p.order, [0, 1, 3]);
    assert!(!p.stages[2].needed);
    assert!(p.stages[2].steps.is_empty());
    assert_eq!(p.stages[1].base, Source::Stage { index: 0 });
    assert_eq!(
        p.stages[3].steps[0].copy_source,
        Some(Source::Stage { index: 1 })
    );
    let p = plan(src, &[], Some("Build")).expect("plan");
    assert_eq!(p.order, [0, 1]);
    assert!(plan(src, &[], Some("nope")).is_err());
}

#[test]
fn copy_from_image_and_mount_from_stage() {
    let p = plan(
        "FROM scratch AS tools\nFROM scratch\nCOPY --from=alpine:3 /x /x\nRUN --mount=from=tools,target=/t x\n",
        &[],
        None,
    )
    .expect("plan");
    assert_eq!(p.order, [0, 1]);
    let steps = &p.stages[1].steps;
    assert_eq!(
        steps[0].copy_source,
        Some(Source::Image {
            reference: "alpine:3".into()
        })
    );
    assert_eq!(
        steps[1].mounts[0].source_of,
        Some(Source::Stage { index: 0 })
    );
}

#[test]
fn errors_are_located() {
    let e = plan("RUN x\nFROM scratch\n", &[], None).expect_err("run before from");
    assert_eq!(e.position.line, 1);
    assert!(plan("ARG A\n", &[], None).is_err());
    let e = plan("FROM scratch AS a\nFROM scratch AS A\n", &[], None).expect_err("duplicate");
    assert_eq!(e.position.line, 2);
    assert!(plan("FROM scratch AS a\nCOPY --from=a x y\n", &[], None).is_err());
    assert!(plan(
        "FROM scratch AS a\nCOPY --from=b x y\nFROM scratch AS b\nCOPY --from=a x y\n",
        &[],
        None
    )
    .is_err());
    assert!(plan("FROM scratch\nCOPY --from=7 x y\n", &[], None).is_err());
    assert!(plan("FROM scratch\nENV A=${B:?missing}\n", &[], None).is_err());
    assert!(plan("FROM --platform=nonsense scratch\n", &[], None).is_err());
    assert!(plan("ARG X\nFROM ${X}\n", &[], None).is_err());
    assert!(plan("FROM scratch\nRUN --mount=type=cache x\n", &[], None).is_err());
}

#[test]
fn heredoc_copy_content_is_expanded_unless_quoted() {
    let p = plan(
        "FROM scratch\nARG N=v\nCOPY <<A <<'B' /d/\n\"$N\"\nA\n$N\nB\n",
        &[],
        None,
    )
    .expect("plan");
    let Instruction::Copy(copy) = &p.stages[0].steps[1].instruction else {
        panic!("not COPY")
    };
    assert_eq!(copy.inline_sources[0].content, "\"v\"\n");
    assert_eq!(copy.inline_sources[1].content, "$N\n");
}

#[test]
fn flag_value_errors_point_at_the_flag() {
    let e = plan(
        "FROM scratch\nRUN --network=none --mount=type=cache,taget=/x make\n",
        &[],
        None,
    )
    .expect_err("bad mount key");
    assert_eq!((e.position.line, e.position.column), (2, 20));
    assert!(
        e.message.contains("did you mean `target`?"),
        "{}",
        e.message
    );
    let e = plan("FROM scratch\nCOPY --chown=1 --from=9 a b\n", &[], None).expect_err("bad index");
    assert_eq!((e.position.line, e.position.column), (2, 16));
}
