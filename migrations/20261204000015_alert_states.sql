-- An alert's kind and its delivery status per channel are closed sets, decoded into enums
-- (payment-api's alerts::kind): a value the code does not know is refused here, not
-- discovered when the dispatcher reads it.
ALTER TABLE alerts
    ADD CONSTRAINT alerts_kind_known CHECK (kind IN (
        'recharge_unknown', 'recharge_failed', 'recharge_stuck', 'refund_failed',
        'refund_stuck', 'payment_without_callback', 'money_taken_unfulfilled',
        'late_top_up_outcome', 'callback_anomaly', 'reconciliation_difference',
        'reconciliation_late', 'outbox_backlog', 'queue_depth', 'dead_letters')),
    ADD CONSTRAINT alerts_wecom_status_known CHECK (wecom_status IN ('pending', 'sent', 'off')),
    ADD CONSTRAINT alerts_email_status_known CHECK (email_status IN ('pending', 'sent', 'off'));
