//! One worker process's slots on this gateway. A worker holds one connection per shard
//! (WELCOME's `connections`, §3.8) and declares one `max_concurrency` for all of them
//! (§9.1): its connections draw on one [`InstanceSlots`], so that N connections do not
//! take N times what the process can serve.
//!
//! An instance is a worker id's connections with the same non-empty `instance` name from
//! the same IP address; a connection without an instance name has slots of its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, Weak};

/// The requests open or reserved across one instance's connections, and of those the ones
/// whose body is still streaming from the client.
#[derive(Default)]
pub struct InstanceSlots {
    pub in_flight: AtomicUsize,
    pub streamed_uploads: AtomicUsize,
    /// Where this instance is listed, to unlist it when its last connection goes.
    listed: Option<(Arc<InstanceIndex>, InstanceKey)>,
}

type InstanceKey = (Box<str>, IpAddr);

/// A worker id's instances with a connection open: instance → its slots. Entries are
/// weak, and removed by the slots' own drop, so the index holds no more entries than
/// instances connected and a registration costs one lookup.
#[derive(Default)]
pub struct InstanceIndex(Mutex<HashMap<InstanceKey, Weak<InstanceSlots>>>);

impl InstanceIndex {
    /// The slots of `instance` from `ip`: those its other connections use, or new ones.
    /// Under one lock, so that connections of one instance registering at once on
    /// several shards still share them.
    pub fn slots(self: &Arc<Self>, instance: &str, ip: IpAddr) -> Arc<InstanceSlots> {
        if instance.is_empty() {
            return Arc::default();
        }
        let key: InstanceKey = (instance.into(), ip);
        let mut map = self.0.lock().unwrap();
        if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
            return live;
        }
        let slots = Arc::new(InstanceSlots {
            in_flight: AtomicUsize::new(0),
            streamed_uploads: AtomicUsize::new(0),
            listed: Some((self.clone(), key.clone())),
        });
        map.insert(key, Arc::downgrade(&slots));
        slots
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

impl Drop for InstanceSlots {
    fn drop(&mut self) {
        if let Some((index, key)) = self.listed.take() {
            let mut map = index.0.lock().unwrap();
            // A connection of the instance that arrived meanwhile listed new slots: keep those.
            if map.get(&key).is_some_and(|w| w.strong_count() == 0) {
                map.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn one_instances_connections_share_slots_and_others_do_not() {
        let index = Arc::new(InstanceIndex::default());
        let a = index.slots("host:1", HOST);
        assert!(Arc::ptr_eq(&a, &index.slots("host:1", HOST)));
        assert!(!Arc::ptr_eq(&a, &index.slots("host:2", HOST)));
        assert!(!Arc::ptr_eq(
            &a,
            &index.slots("host:1", IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        ));
        // No name, no sharing.
        assert!(!Arc::ptr_eq(&index.slots("", HOST), &index.slots("", HOST)));
    }

    #[test]
    fn an_instance_is_unlisted_when_its_last_connection_goes() {
        let index = Arc::new(InstanceIndex::default());
        let a = index.slots("host:1", HOST);
        let b = index.slots("host:1", HOST);
        drop(a);
        assert_eq!(index.len(), 1);
        drop(b);
        assert_eq!(index.len(), 0);
        // Back again: fresh slots.
        let c = index.slots("host:1", HOST);
        assert_eq!(c.in_flight.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert_eq!(index.len(), 1);
    }
}
