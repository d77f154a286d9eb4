//! The member slots of a run on Kubernetes. A StatefulSet's slots are
//! fixed: one per ordinal, named before the run. An operator that names its
//! member pods itself (`<cluster>-<random>`) gets a slot per pod, added when
//! the pod first appears. Every slot gets a local port-forward bridge, so
//! the member poller can reach it.

use super::observe;
use super::profile::{Profile, fill};
use crate::trace::{EventKind, Recorder, SlotInfo};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

pub struct SlotBook {
    dynamic: bool,
    pods: Api<Pod>,
    client_port: u16,
    /// `${NAME}` and `${NAMESPACE}` of the URL templates.
    name: String,
    namespace: String,
    peer_url: String,
    client_url: String,
    recorder: Arc<Recorder>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    slots: Vec<SlotInfo>,
    endpoints: BTreeMap<String, u16>,
    bridges: Vec<JoinHandle<()>>,
}

impl SlotBook {
    /// The book of a run: with the profile's fixed slots up to `max`
    /// members, or empty when the operator names its pods.
    pub fn new(
        profile: &Profile,
        pods: Api<Pod>,
        name: &str,
        namespace: &str,
        max: u32,
        recorder: Arc<Recorder>,
    ) -> std::io::Result<SlotBook> {
        let book = SlotBook {
            dynamic: profile.dynamic_members(),
            pods,
            client_port: profile.members.client_port,
            name: name.to_string(),
            namespace: namespace.to_string(),
            peer_url: profile.members.peer_url.clone(),
            client_url: profile.members.client_url.clone(),
            recorder,
            inner: Mutex::new(Inner::default()),
        };
        for ordinal in 0..max {
            if let Some(pod) = profile.pod_name(name, ordinal) {
                book.insert(&pod)?;
            }
        }
        Ok(book)
    }

    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }

    /// A member pod was seen: when pods are named by the operator and this
    /// one is new, it becomes a slot (recorded as `slot-added`).
    pub fn admit(&self, pod: &str) {
        if !self.dynamic || self.contains(pod) {
            return;
        }
        match self.insert(pod) {
            Ok(info) => self.recorder.record(EventKind::SlotAdded { info }),
            Err(e) => tracing::warn!("no port-forward bridge for pod {pod}: {e}"),
        }
    }

    fn insert(&self, pod: &str) -> std::io::Result<SlotInfo> {
        let (port, task) = observe::bridge(self.pods.clone(), pod.to_string(), self.client_port)?;
        let url = |template: &str| {
            fill(
                template,
                &[
                    ("POD", pod),
                    ("NAME", &self.name),
                    ("NAMESPACE", &self.namespace),
                ],
            )
        };
        let mut inner = self.lock();
        let info = SlotInfo {
            name: pod.to_string(),
            ordinal: inner.slots.len() as u32,
            peer_url: url(&self.peer_url),
            client_url: url(&self.client_url),
        };
        inner.slots.push(info.clone());
        inner.endpoints.insert(pod.to_string(), port);
        inner.bridges.push(task);
        Ok(info)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn contains(&self, pod: &str) -> bool {
        self.lock().slots.iter().any(|s| s.name == pod)
    }

    pub fn slots(&self) -> Vec<SlotInfo> {
        self.lock().slots.clone()
    }

    /// Each slot's local bridge port.
    pub fn endpoints(&self) -> BTreeMap<String, u16> {
        self.lock().endpoints.clone()
    }

    /// Stops the bridges (the book itself may outlive the run's tasks).
    pub fn close(&self) {
        for task in self.lock().bridges.drain(..) {
            task.abort();
        }
    }
}

impl Drop for SlotBook {
    fn drop(&mut self) {
        self.close();
    }
}
