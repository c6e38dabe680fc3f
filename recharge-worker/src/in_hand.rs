//! The orders this process is working on right now. A claim that stays `processing` too
//! long is taken over by the sweep even under a live lease (its worker lost track of it);
//! the sweep must leave alone the ones this very process is still working on: they are
//! slow, not lost, and taken over they would be claimed again under the same lease.

use std::collections::HashMap;
use std::sync::Mutex;

use shared::order::OrderNumber;

#[derive(Default)]
pub struct InHand(Mutex<HashMap<OrderNumber, usize>>);

/// One task's hold on an order, let go when dropped.
pub struct Held<'a> {
    in_hand: &'a InHand,
    order_number: OrderNumber,
}

impl InHand {
    pub fn hold(&self, order_number: &OrderNumber) -> Held<'_> {
        *self.lock().entry(order_number.clone()).or_default() += 1;
        Held {
            in_hand: self,
            order_number: order_number.clone(),
        }
    }

    pub fn orders(&self) -> Vec<OrderNumber> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OrderNumber, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut held = self.in_hand.lock();
        if let Some(count) = held.get_mut(&self.order_number) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.order_number);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_in_hand_while_any_task_holds_it() {
        let in_hand = InHand::default();
        let order = OrderNumber::parse("ORD1700000000000HAND0001").unwrap();
        let first = in_hand.hold(&order);
        let second = in_hand.hold(&order);
        drop(first);
        assert_eq!(in_hand.orders(), vec![order.clone()]);
        drop(second);
        assert!(in_hand.orders().is_empty());
    }
}
