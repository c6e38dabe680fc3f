//! Unitel's answers to the mini-program's lookups (a number's products, a postpaid bill),
//! kept per number for `UNITEL_LOOKUP_CACHE_MS`: a customer browsing, or someone scripting
//! the lookup routes, costs Unitel one call per number in that time. Orders are always
//! priced from a fresh answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::order::Msisdn;
use shared::unitel::{PostpaidBill, ServiceType, UnitelClient, UnitelError};

/// Numbers remembered at most; past this, expired answers go first, then all.
const MAX_ENTRIES: usize = 10_000;

pub struct Lookups {
    unitel: Arc<UnitelClient>,
    keep_for: Duration,
    services: Mutex<HashMap<(Msisdn, String), (Instant, ServiceType)>>,
    bills: Mutex<HashMap<(Msisdn, Msisdn), (Instant, PostpaidBill)>>,
}

impl Lookups {
    pub fn new(unitel: Arc<UnitelClient>, keep_for: Duration) -> Self {
        Lookups {
            unitel,
            keep_for,
            services: Mutex::default(),
            bills: Mutex::default(),
        }
    }

    pub async fn service_type(
        &self,
        msisdn: &Msisdn,
        info: &str,
    ) -> Result<ServiceType, UnitelError> {
        let key = (msisdn.clone(), info.to_owned());
        if let Some(known) = self.fresh(&self.services, &key) {
            return Ok(known);
        }
        let answer = self.unitel.service_type(msisdn, info).await?;
        self.remember(&self.services, key, answer.clone());
        Ok(answer)
    }

    pub async fn postpaid_bill(
        &self,
        owner: &Msisdn,
        msisdn: &Msisdn,
    ) -> Result<PostpaidBill, UnitelError> {
        let key = (owner.clone(), msisdn.clone());
        if let Some(known) = self.fresh(&self.bills, &key) {
            return Ok(known);
        }
        let answer = self.unitel.postpaid_bill(owner, msisdn).await?;
        self.remember(&self.bills, key, answer.clone());
        Ok(answer)
    }

    fn fresh<K: std::hash::Hash + Eq, V: Clone>(
        &self,
        map: &Mutex<HashMap<K, (Instant, V)>>,
        key: &K,
    ) -> Option<V> {
        let map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(key)
            .filter(|(at, _)| at.elapsed() < self.keep_for)
            .map(|(_, value)| value.clone())
    }

    fn remember<K: std::hash::Hash + Eq, V>(
        &self,
        map: &Mutex<HashMap<K, (Instant, V)>>,
        key: K,
        value: V,
    ) {
        let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (at, _)| at.elapsed() < self.keep_for);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (Instant::now(), value));
    }
}
