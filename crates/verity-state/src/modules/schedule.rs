//! Work due at a height (assignment timeouts, task deadlines, unbonding releases), kept as one
//! list per (kind, height) so a block reads exactly what is due and nothing else.

use serde::{de::DeserializeOwned, Serialize};

use crate::overlay::Overlay;
use crate::store::Table;
use crate::StateError;

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Timeout,
    Deadline,
    Unbond,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Timeout => b't',
            Kind::Deadline => b'd',
            Kind::Unbond => b'u',
        }
    }
}

fn key(kind: Kind, height: u64) -> Vec<u8> {
    let mut key = vec![kind.tag()];
    key.extend_from_slice(&height.to_be_bytes());
    key
}

pub fn push<T: Serialize + DeserializeOwned>(
    state: &mut Overlay<'_>,
    kind: Kind,
    height: u64,
    item: &T,
) -> Result<(), StateError> {
    let key = key(kind, height);
    let mut items: Vec<serde_json::Value> = state
        .get_json(Table::Schedule, &key, "schedule")?
        .unwrap_or_default();
    items.push(serde_json::to_value(item).expect("schedule items serialize"));
    state.put_json(Table::Schedule, key, &items);
    Ok(())
}

/// Removes and returns what is due at `height`.
pub fn take<T: DeserializeOwned>(
    state: &mut Overlay<'_>,
    kind: Kind,
    height: u64,
) -> Result<Vec<T>, StateError> {
    let key = key(kind, height);
    let items: Option<Vec<T>> = state.get_json(Table::Schedule, &key, "schedule")?;
    if items.is_some() {
        state.delete(Table::Schedule, key);
    }
    Ok(items.unwrap_or_default())
}
