//! An ordered environment: `KEY=value` in first-set order, a later set replacing in place, as
//! image configs keep `Env`.

use serde::Serialize;

use crate::shell;

/// Ordered variables; invariant: names are unique.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EnvList(Vec<(String, String)>);

impl EnvList {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut env = EnvList::default();
        for (k, v) in pairs {
            env.set(k, v);
        }
        env
    }

    /// Sets `key`, keeping its position when it already exists.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

impl shell::Env for EnvList {
    fn get(&self, name: &str) -> Option<&str> {
        EnvList::get(self, name)
    }
}
