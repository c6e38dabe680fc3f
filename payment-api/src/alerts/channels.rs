//! Delivering alerts: a WeCom group robot (webhook) and e-mail (SMTP), each optional.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};
use sqlx::PgPool;

use super::{AlertKind, Delivery};
use crate::config::AlertConfig;

pub struct Channels {
    http: reqwest::Client,
    wecom_url: Option<String>,
    email: Option<Email>,
    max_per_minute: i64,
    /// What the channels' settings hold that no log or `alerts.last_error` may: the
    /// webhook's URL and key, the SMTP password.
    secrets: Vec<String>,
}

struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

struct Due {
    id: i64,
    kind: AlertKind,
    order_number: Option<String>,
    message: String,
    occurrences: i32,
    wecom_status: Delivery,
    email_status: Delivery,
}

impl Channels {
    pub fn new(config: &AlertConfig) -> anyhow::Result<Self> {
        let email = match &config.smtp_url {
            None => None,
            Some(url) => Some(Email {
                transport: AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())?
                    .timeout(Some(Duration::from_secs(10)))
                    .build(),
                from: config.email_from.parse()?,
                to: config
                    .email_to
                    .iter()
                    .map(|a| a.parse())
                    .collect::<Result<_, _>>()?,
            }),
        };
        Ok(Channels {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            wecom_url: config
                .wecom_webhook_url
                .as_ref()
                .map(|u| u.expose().to_owned()),
            email,
            max_per_minute: i64::from(config.max_per_minute),
            secrets: secrets_in(config),
        })
    }

    /// `text` with every secret of the channels' settings masked: the last guard, after
    /// each error was made without them.
    fn redact(&self, text: String) -> String {
        self.secrets
            .iter()
            .fold(text, |text, secret| text.replace(secret.as_str(), "***"))
    }

    /// Sends what is due, within the per-minute budget; failures are retried with backoff.
    pub async fn deliver_due(&self, db: &PgPool) -> Result<usize, sqlx::Error> {
        // Channels that are not configured are switched off, so their alerts do not wait.
        sqlx::query!(
            "UPDATE alerts SET wecom_status = CASE WHEN $1 THEN wecom_status ELSE 'off' END,
                               email_status = CASE WHEN $2 THEN email_status ELSE 'off' END
              WHERE (wecom_status = 'pending' AND NOT $1) OR (email_status = 'pending' AND NOT $2)",
            self.wecom_url.is_some(),
            self.email.is_some(),
        )
        .execute(db)
        .await?;
        let sent_last_minute = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM alerts WHERE delivered_at > now() - interval '1 minute'"#
        )
        .fetch_one(db)
        .await?;
        let budget = (self.max_per_minute - sent_last_minute).max(0);
        if budget == 0 {
            return Ok(0);
        }
        let money: Vec<&str> = AlertKind::MONEY.iter().map(|k| k.as_str()).collect();
        let due = sqlx::query_as!(
            Due,
            r#"SELECT id, kind AS "kind: AlertKind", order_number, message, occurrences,
                      wecom_status AS "wecom_status: Delivery", email_status AS "email_status: Delivery"
               FROM alerts
              WHERE (wecom_status = 'pending' OR email_status = 'pending') AND next_attempt_at <= now()
              -- money first: a flood of other alerts cannot hold these back
              ORDER BY kind <> ALL($2::text[]), id
              LIMIT $1"#,
            budget,
            &money as &[&str],
        )
        .fetch_all(db)
        .await?;
        let mut delivered = 0;
        for alert in &due {
            let text = format!(
                "[eLife top-up] {}{}: {}{}",
                alert.kind,
                alert
                    .order_number
                    .as_deref()
                    .map(|o| format!(" {o}"))
                    .unwrap_or_default(),
                alert.message,
                if alert.occurrences > 1 {
                    format!(" (×{})", alert.occurrences)
                } else {
                    String::new()
                }
            );
            let mut wecom = alert.wecom_status;
            let mut email = alert.email_status;
            let mut errors = Vec::new();
            if wecom == Delivery::Pending {
                match self.send_wecom(&text).await {
                    Ok(()) => wecom = Delivery::Sent,
                    Err(e) => errors.push(self.redact(format!("wecom: {e:#}"))),
                }
            }
            if email == Delivery::Pending {
                match self.send_email(alert.kind, &text).await {
                    Ok(()) => email = Delivery::Sent,
                    Err(e) => errors.push(self.redact(format!("email: {e}"))),
                }
            }
            let done = wecom != Delivery::Pending && email != Delivery::Pending;
            let delivered_now = wecom != alert.wecom_status || email != alert.email_status;
            sqlx::query!(
                "UPDATE alerts SET wecom_status = $2, email_status = $3, last_error = $4,
                        attempts = attempts + 1,
                        sent_at = CASE WHEN $5 THEN now() ELSE sent_at END,
                        delivered_at = CASE WHEN $6 THEN now() ELSE delivered_at END,
                        next_attempt_at = now() + make_interval(secs => LEAST(600, 5 * power(2, LEAST(attempts, 7))))
                  WHERE id = $1",
                alert.id,
                wecom.as_str(),
                email.as_str(),
                (!errors.is_empty()).then(|| errors.join("; ")),
                done,
                delivered_now,
            )
            .execute(db)
            .await?;
            if done {
                delivered += 1;
            } else {
                tracing::warn!(alert = alert.id, errors = ?errors, "alert not delivered yet");
            }
        }
        Ok(delivered)
    }

    async fn send_wecom(&self, text: &str) -> anyhow::Result<()> {
        let Some(url) = &self.wecom_url else {
            return Ok(());
        };
        // reqwest's errors name the URL they were about, and the webhook's URL holds its
        // key: they are recorded and logged without it.
        let answer: Value = self
            .http
            .post(url)
            .json(&json!({"msgtype": "text", "text": {"content": text}}))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(reqwest::Error::without_url)?
            .json()
            .await
            .map_err(reqwest::Error::without_url)?;
        anyhow::ensure!(answer["errcode"] == 0, "WeCom answered {answer}");
        Ok(())
    }

    async fn send_email(&self, kind: AlertKind, text: &str) -> anyhow::Result<()> {
        let Some(email) = &self.email else {
            return Ok(());
        };
        let mut message = Message::builder()
            .from(email.from.clone())
            .subject(format!("[eLife top-up] {kind}"));
        for to in &email.to {
            message = message.to(to.clone());
        }
        email.transport.send(message.body(text.to_owned())?).await?;
        Ok(())
    }
}

/// The webhook's URL, its query (the key) and each value in it, and the SMTP URL's
/// password, as they appear in the settings.
fn secrets_in(config: &AlertConfig) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Some(url) = &config.wecom_webhook_url {
        let url = url.expose();
        secrets.push(url.to_owned());
        if let Some((_, query)) = url.split_once('?') {
            secrets.push(query.to_owned());
            secrets.extend(
                query
                    .split('&')
                    .filter_map(|pair| pair.split_once('=').map(|(_, value)| value))
                    .filter(|value| value.len() >= 6)
                    .map(str::to_owned),
            );
        }
    }
    if let Some(url) = &config.smtp_url {
        if let Some(password) = reqwest::Url::parse(url.expose())
            .ok()
            .and_then(|u| u.password().map(str::to_owned))
            .filter(|p| !p.is_empty())
        {
            secrets.push(password);
        }
    }
    // Longest first: a secret inside another is masked with it.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}
