//! What a test reads back from a world: the calls, the hosts and instances, the deliveries, the
//! violations of the safety rules.

use super::*;

impl World {
    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Calls of `op` so far.
    pub fn count(&self, op: Op) -> usize {
        self.lock().calls.iter().filter(|c| c.op() == op).count()
    }

    /// Power-off requests for `host`, at any fencing level.
    pub fn power_offs(&self, host: impl Into<HostId>) -> usize {
        let host = host.into();
        self.lock()
            .calls
            .iter()
            .filter(|c| matches!(c, Call::PowerOff { host: h, .. } if *h == host))
            .count()
    }

    /// Evacuation requests for `instance` (accepted or not).
    pub fn evacuate_calls(&self, instance: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| matches!(c, Call::Evacuate { instance: i } if i == instance))
            .count()
    }

    /// A host's simulated state.
    pub fn host_state(&self, host: impl Into<HostId>) -> Option<SimHost> {
        self.lock().hosts.get(&host.into()).cloned()
    }

    /// Every host, by name.
    pub fn hosts(&self) -> Vec<HostId> {
        self.lock().hosts.keys().cloned().collect()
    }

    /// An instance's simulated state.
    pub fn instance_state(&self, instance: &str) -> Option<SimInstance> {
        self.lock().instances.get(instance).cloned()
    }

    /// The instances currently on `host` (exact match).
    pub fn instances_on(&self, host: impl Into<HostId>) -> Vec<Instance> {
        let host = host.into();
        self.lock()
            .instances
            .values()
            .filter(|i| i.instance.host == host)
            .map(|i| i.instance.clone())
            .collect()
    }

    /// Every report delivered by a fake notifier, in order.
    pub fn delivered(&self) -> Vec<Delivered> {
        self.lock().delivered.clone()
    }

    /// Safety rules the world saw broken (an evacuation from a host whose power reads on, a second
    /// evacuation of an instance already rebuilding, ...). A test of the runtime asserts this is empty.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }
}
