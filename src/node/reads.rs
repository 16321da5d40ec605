//! A pool of read connections to the store, for the dashboard's queries, on blocking threads.

use crate::store::{Location, Store, StoreError};
use std::sync::{Arc, Mutex};

/// How many read connections are kept open.
const READ_POOL: usize = 8;

/// Read connections to one store.
#[derive(Debug)]
pub struct ReadPool {
    location: Location,
    idle: Mutex<Vec<Store>>,
}

impl ReadPool {
    pub fn new(location: Location) -> ReadPool {
        ReadPool {
            location,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on a pooled connection, on a blocking thread.
    pub async fn with<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let pool = self.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let taken = pool.idle.lock().ok().and_then(|mut v| v.pop());
            let store = match taken {
                Some(s) => s,
                None => Store::open(&pool.location)?,
            };
            let result = f(&store);
            if let Ok(mut idle) = pool.idle.lock() {
                if idle.len() < READ_POOL {
                    idle.push(store);
                }
            }
            result
        })
        .await;
        match joined {
            Ok(r) => r,
            Err(e) => Err(StoreError::Io(std::io::Error::other(e.to_string()))),
        }
    }
}
