-- payment_anomalies keeps what a person may still need: settled anomalies older than
-- ANOMALY_RETENTION_DAYS are counted here, per kind and month (UTC), and removed.
CREATE TABLE payment_anomaly_months (
    month     DATE NOT NULL,
    kind      TEXT NOT NULL,
    anomalies BIGINT NOT NULL CHECK (anomalies > 0),
    PRIMARY KEY (month, kind)
);

CREATE INDEX payment_anomalies_by_age ON payment_anomalies (created_at);

-- Every anomaly ever recorded, per month and kind: those still kept and those summarised.
CREATE VIEW payment_anomalies_per_month AS
SELECT month, kind, sum(anomalies)::bigint AS anomalies
  FROM (SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date AS month, kind,
               count(*) AS anomalies
          FROM payment_anomalies GROUP BY 1, 2
        UNION ALL
        SELECT month, kind, anomalies FROM payment_anomaly_months) AS every_anomaly
 GROUP BY month, kind;
