//! The connected clients, for `SHOW CLIENTS`: registered at startup, removed when they leave.
//! The registry's lock is taken only then and by the console; a client's own counters are atomics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What a client is doing, as PostgreSQL's pg_stat_activity would say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Idle = 0,
    Active = 1,
    IdleInTransaction = 2,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Active => "active",
            State::IdleInTransaction => "idle in transaction",
        }
    }
}

pub struct Client {
    pub id: u64,
    pub user: String,
    pub database: String,
    pub addr: SocketAddr,
    pub since: SystemTime,
    pub statements: AtomicU64,
    state: AtomicU8,
}

impl Client {
    pub fn set_state(&self, state: State) {
        self.state.store(state as u8, Relaxed);
    }

    pub fn state(&self) -> State {
        match self.state.load(Relaxed) {
            1 => State::Active,
            2 => State::IdleInTransaction,
            _ => State::Idle,
        }
    }
}

#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<Client>>>,
}

/// A client's place in the registry; leaving drops it.
pub struct Registered {
    registry: Arc<Registry>,
    pub client: Arc<Client>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.client.id);
    }
}

impl Registry {
    pub fn register(self: &Arc<Self>, user: &str, database: &str, addr: SocketAddr) -> Registered {
        let client = Arc::new(Client {
            id: self.next.fetch_add(1, Relaxed) + 1,
            user: user.to_owned(),
            database: database.to_owned(),
            addr,
            since: SystemTime::now(),
            statements: AtomicU64::new(0),
            state: AtomicU8::new(State::Idle as u8),
        });
        self.lock().insert(client.id, client.clone());
        Registered {
            registry: self.clone(),
            client,
        }
    }

    /// Every connected client, oldest first.
    pub fn list(&self) -> Vec<Arc<Client>> {
        self.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Client>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}
