//! Small values tests build again and again.

use crate::{HostId, Instance};

/// An ACTIVE, volume-backed instance `id` on `host`, of project `p1` and user `u1`, named like its id.
pub fn instance(id: &str, host: &str) -> Instance {
    Instance {
        id: id.into(),
        name: id.into(),
        project: "p1".into(),
        user: "u1".into(),
        status: "ACTIVE".into(),
        host: HostId::from(host),
        metadata: Default::default(),
        volume_backed: true,
    }
}
