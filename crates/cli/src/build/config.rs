//! The image config of the target stage: the base image's config (or an empty one), then every
//! instruction of the stages the target descends from, with Docker's rules:
//! - `Env` starts with the default PATH when the base has none (BuildKit does this even for
//!   `FROM scratch`); ENV replaces a variable in place or appends it;
//! - shell-form CMD/ENTRYPOINT/HEALTHCHECK run through the SHELL in force;
//! - ENTRYPOINT resets a CMD inherited from the base (not one set in the same stage chain);
//! - MAINTAINER sets the top-level `author`; ONBUILD appends to `OnBuild`;
//! - one history entry per instruction, `empty_layer` for the ones that change only config.

use rbuild_frontend::instructions::Instruction;
use rbuild_frontend::stages::{BuildPlan, Source, Step};
use rbuild_sandbox::DEFAULT_PATH;
use serde_json::{json, Map, Value};

/// The config being assembled, plus what the layer list needs to know.
#[derive(Debug)]
pub struct ImageConfig {
    pub doc: Value,
    /// Steps that made a layer, in order (their history entries are not empty).
    pub layer_steps: usize,
    /// Whether CMD was set by an instruction of this build (ENTRYPOINT keeps it then).
    cmd_set: bool,
}

/// Which stages the target starts from, root first, and the image at the bottom (if any).
pub fn stage_chain(plan: &BuildPlan) -> (Vec<usize>, Option<String>) {
    let mut chain = vec![plan.target];
    loop {
        let stage = &plan.stages[*chain.last().unwrap_or(&plan.target)];
        match &stage.base {
            Source::Stage { index } if !chain.contains(index) => chain.push(*index),
            Source::Image { reference } => {
                chain.reverse();
                return (chain, Some(reference.clone()));
            }
            _ => {
                chain.reverse();
                return (chain, None);
            }
        }
    }
}

impl ImageConfig {
    /// Starts from a base config document, or an empty linux image for `FROM scratch`.
    pub fn new(base: Option<&[u8]>, architecture: &str) -> anyhow::Result<ImageConfig> {
        let mut doc: Value = match base {
            Some(bytes) => serde_json::from_slice(bytes)?,
            None => json!({
                "architecture": architecture,
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }),
        };
        if !doc["config"].is_object() {
            doc["config"] = json!({});
        }
        if !doc["history"].is_array() {
            doc["history"] = json!([]);
        }
        let mut config = ImageConfig {
            doc,
            layer_steps: 0,
            cmd_set: false,
        };
        // The base's ONBUILD triggers ran in this build: they are not handed down.
        config.runtime().remove("OnBuild");
        let env = config.env();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            let mut with_path = vec![format!("PATH={DEFAULT_PATH}")];
            with_path.extend(env);
            config.runtime().insert("Env".into(), json!(with_path));
        }
        Ok(config)
    }

    fn runtime(&mut self) -> &mut Map<String, Value> {
        if !self.doc["config"].is_object() {
            self.doc["config"] = json!({});
        }
        self.doc["config"]
            .as_object_mut()
            .unwrap_or_else(|| unreachable!("just made an object"))
    }

    fn env(&self) -> Vec<String> {
        strings(&self.doc["config"]["Env"])
    }

    fn shell(&self) -> Vec<String> {
        Some(strings(&self.doc["config"]["Shell"]))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn command(&self, args: &[String], shell_form: bool) -> Value {
        if shell_form {
            let mut argv = self.shell();
            argv.push(args.join(" "));
            json!(argv)
        } else {
            json!(args)
        }
    }

    /// A new stage begins: CMD set by an earlier stage counts as inherited (BuildKit tracks
    /// `cmdSet` per stage), so an ENTRYPOINT here resets it.
    pub fn begin_stage(&mut self) {
        self.cmd_set = false;
    }

    /// Applies one instruction and records its history entry.
    pub fn apply(&mut self, step: &Step, created: &str) {
        let mut layer = false;
        match &step.instruction {
            Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) => layer = true,
            Instruction::Workdir { .. } => {
                layer = true;
                let dir = step.state.as_ref().map(|s| s.workdir.clone());
                if let Some(dir) = dir {
                    self.runtime().insert("WorkingDir".into(), json!(dir));
                }
            }
            Instruction::Env { vars } => {
                let mut env = self.env();
                for var in vars {
                    let entry = format!("{}={}", var.key, var.value);
                    match env
                        .iter_mut()
                        .find(|e| e.split_once('=').map(|(k, _)| k) == Some(var.key.as_str()))
                    {
                        Some(slot) => *slot = entry,
                        None => env.push(entry),
                    }
                }
                self.runtime().insert("Env".into(), json!(env));
            }
            Instruction::Cmd(command) => {
                let value = self.command(&command.args, command.shell_form);
                self.runtime().insert("Cmd".into(), value);
                self.cmd_set = true;
            }
            Instruction::Entrypoint(command) => {
                let value = self.command(&command.args, command.shell_form);
                self.runtime().insert("Entrypoint".into(), value);
                if !self.cmd_set {
                    self.runtime().insert("Cmd".into(), Value::Null);
                }
            }
            Instruction::Shell { shell } => {
                self.runtime().insert("Shell".into(), json!(shell));
            }
            Instruction::Label { labels } => {
                let runtime = self.runtime();
                if !runtime.get("Labels").is_some_and(|l| l.is_object()) {
                    runtime.insert("Labels".into(), json!({}));
                }
                for label in labels {
                    runtime["Labels"][&label.key] = json!(label.value);
                }
            }
            Instruction::Maintainer { name } => self.doc["author"] = json!(name),
            Instruction::Expose { .. } => {
                let runtime = self.runtime();
                if !runtime.get("ExposedPorts").is_some_and(|p| p.is_object()) {
                    runtime.insert("ExposedPorts".into(), json!({}));
                }
                for port in &step.exposed_ports {
                    runtime["ExposedPorts"][port] = json!({});
                }
            }
            Instruction::Volume { paths } => {
                let runtime = self.runtime();
                if !runtime.get("Volumes").is_some_and(|v| v.is_object()) {
                    runtime.insert("Volumes".into(), json!({}));
                }
                for path in paths {
                    runtime["Volumes"][path] = json!({});
                }
            }
            Instruction::User { user } => {
                self.runtime().insert("User".into(), json!(user));
            }
            Instruction::Stopsignal { signal } => {
                self.runtime().insert("StopSignal".into(), json!(signal));
            }
            Instruction::Onbuild { expression } => {
                let runtime = self.runtime();
                if !runtime.get("OnBuild").is_some_and(|o| o.is_array()) {
                    runtime.insert("OnBuild".into(), json!([]));
                }
                if let Some(list) = runtime["OnBuild"].as_array_mut() {
                    list.push(json!(expression));
                }
            }
            Instruction::Healthcheck(check) => {
                let mut value = Map::new();
                let test = match check.test.first().map(String::as_str) {
                    Some("CMD-SHELL") => {
                        let mut argv = vec!["CMD-SHELL".to_string()];
                        argv.extend(check.test[1..].iter().cloned());
                        argv
                    }
                    _ => check.test.clone(),
                };
                value.insert("Test".into(), json!(test));
                for (key, ns) in [
                    ("Interval", check.interval),
                    ("Timeout", check.timeout),
                    ("StartPeriod", check.start_period),
                    ("StartInterval", check.start_interval),
                ] {
                    if ns != 0 {
                        value.insert(key.into(), json!(ns));
                    }
                }
                if check.retries != 0 {
                    value.insert("Retries".into(), json!(check.retries));
                }
                self.runtime()
                    .insert("Healthcheck".into(), Value::Object(value));
            }
            Instruction::Arg { .. } | Instruction::From(_) => return,
        }
        let mut entry = Map::new();
        entry.insert("created".into(), json!(created));
        let created_by = match &step.instruction {
            Instruction::Run(_) => format!("{} # buildkit", step.source.trim()),
            _ => step.source.trim().to_string(),
        };
        entry.insert("created_by".into(), json!(created_by));
        entry.insert("comment".into(), json!("buildkit.dockerfile.v0"));
        if layer {
            self.layer_steps += 1;
        } else {
            entry.insert("empty_layer".into(), json!(true));
        }
        if let Some(history) = self.doc["history"].as_array_mut() {
            history.push(Value::Object(entry));
        }
    }

    /// Records a layer that no instruction of the stages made (a `FROM` of a build context).
    pub fn add_layer_entry(&mut self, created_by: &str, created: &str) {
        self.layer_steps += 1;
        if let Some(history) = self.doc["history"].as_array_mut() {
            history.push(json!({"created": created, "created_by": created_by, "comment": "buildkit.dockerfile.v0"}));
        }
    }

    /// Finishes the document: our layers' diff_ids appended, `created` set.
    pub fn finish(mut self, diff_ids: &[String], created: &str) -> anyhow::Result<Vec<u8>> {
        if !self.doc["rootfs"]["diff_ids"].is_array() {
            self.doc["rootfs"] = json!({"type": "layers", "diff_ids": []});
        }
        if let Some(ids) = self.doc["rootfs"]["diff_ids"].as_array_mut() {
            ids.extend(diff_ids.iter().map(|d| json!(d)));
        }
        self.doc["created"] = json!(created);
        Ok(rbuild_oci::canonical::to_vec(&self.doc)?)
    }
}

/// The strings of a JSON array (`[]` for anything else): Env, Cmd, Shell, OnBuild, ...
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// RFC 3339 UTC time of a unix timestamp (what `created` fields hold).
pub fn rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_formats_unix_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
