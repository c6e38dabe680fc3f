//! `payment-api import-legacy --from mysql://user@host/db [--password-file PATH]
//! [--dry-run]`: brings the replaced system's users, orders and exchange rate over
//! (docs/cutover.md). Idempotent: what exists here already is left alone, so a second run
//! changes nothing and asks WeChat nothing about it. What each order becomes is decided in
//! [`plan`]; an order that may be sent from here is first claimed in the replaced system
//! ([`claim_there`]); every row that cannot be brought over is reported with the reason,
//! and the command then exits with status 3.

mod legacy;
mod plan;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use futures::StreamExt;
use serde_json::json;
use shared::history::Actor;
use shared::lifecycle::{self, ImportedOrder, ImportedPayment, ImportedRecharge, NewOrder};
use shared::money::MntPerYuan;
use shared::order::{OpenId, Operator, OrderNumber, PayChannel};
use sqlx::mysql::MySqlConnectOptions;
use sqlx::PgPool;

use crate::store::{orders, rates, users};
use crate::wechat::{WechatError, WechatPay};
use legacy::{LegacyDb, LegacyOrder};
use plan::AtWechat;

/// `queryorder` calls in flight at once: the import asks about every order it creates.
const WECHAT_CONCURRENCY: usize = 8;

/// The exit status when some rows were not imported.
pub const SOME_ROWS_NOT_IMPORTED: i32 = 3;

/// The replaced system's database password, when `--from` names the database without it.
const PASSWORD_ENV: &str = "LEGACY_DATABASE_PASSWORD";

const USAGE: &str = "payment-api import-legacy --from mysql://user@host:3306/db \
[--password-file PATH] [--dry-run]; the password from the file or LEGACY_DATABASE_PASSWORD \
(or the whole URL in LEGACY_DATABASE_URL instead of --from)";

#[derive(Debug, Default)]
pub struct Report {
    pub dry_run: bool,
    pub users_created: usize,
    pub users_present: usize,
    /// The replaced system's rate, when this run set it here.
    pub rate_imported: Option<MntPerYuan>,
    pub orders: Vec<OrderLine>,
    /// (what, why) for every row not imported.
    pub not_imported: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub order_number: String,
    /// `payment_status/recharge_status` there.
    pub was: String,
    /// What it is (or, in a dry run, would be) here.
    pub becomes: String,
    pub created: bool,
}

impl Report {
    pub fn orders_created(&self) -> usize {
        self.orders.iter().filter(|o| o.created).count()
    }

    pub fn orders_present(&self) -> usize {
        self.orders.iter().filter(|o| !o.created).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let created = if self.dry_run { "to create" } else { "created" };
        if self.dry_run {
            writeln!(f, "dry run: nothing was written")?;
        }
        writeln!(
            f,
            "users: {} {created}, {} already here",
            self.users_created, self.users_present
        )?;
        match self.rate_imported {
            Some(rate) => writeln!(f, "exchange rate: {} MNT per CNY {created}", rate.get())?,
            None => writeln!(f, "exchange rate: nothing to do")?,
        }
        writeln!(
            f,
            "orders: {} {created}, {} already here, {} not imported",
            self.orders_created(),
            self.orders_present(),
            self.not_imported
                .iter()
                .filter(|(what, _)| what.starts_with("order"))
                .count()
        )?;
        for line in self.orders.iter().filter(|o| o.created) {
            writeln!(
                f,
                "  {}  {} -> {}",
                line.order_number, line.was, line.becomes
            )?;
        }
        if !self.not_imported.is_empty() {
            writeln!(
                f,
                "not imported (a person decides; nothing was changed for them):"
            )?;
            for (what, why) in &self.not_imported {
                writeln!(f, "  {what}: {why}")?;
            }
        }
        Ok(())
    }
}

/// What `queryorder` says, in the import's terms; an error when WeChat could not say.
async fn ask_wechat(wechat: &WechatPay, order_number: &OrderNumber) -> Result<AtWechat, String> {
    // The replaced system paid through Cloud Hosting: only that channel knows its orders.
    match wechat.query_order(PayChannel::Cloud, order_number).await {
        Ok(queried) => Ok(match queried.trade_state.as_str() {
            "SUCCESS" => AtWechat::Paid {
                transaction_id: queried
                    .transaction_id
                    .ok_or("WeChat Pay says it is paid but gives no transaction id")?,
                total_fee: queried.total_fee,
                paid_at: queried.paid_at,
            },
            "REFUND" => AtWechat::Refunded,
            "CLOSED" | "REVOKED" => AtWechat::Closed,
            _ => AtWechat::Started,
        }),
        Err(WechatError::Business { code, .. }) if code == "ORDERNOTEXIST" => Ok(AtWechat::Unknown),
        Err(error) => Err(format!(
            "WeChat Pay could not be asked ({error}); run the import again"
        )),
    }
}

/// Why a row cannot be brought over, and whether WeChat Pay took money for it: a customer
/// who paid for an order left behind must be credited or refunded by a person.
async fn with_money_taken(wechat: &WechatPay, order: &LegacyOrder, why: String) -> String {
    let Ok(order_number) = OrderNumber::parse(&order.order_number) else {
        return why;
    };
    match ask_wechat(wechat, &order_number).await {
        Ok(AtWechat::Paid {
            transaction_id,
            total_fee,
            ..
        }) => format!(
            "{why}; WeChat Pay took {} for it (transaction {transaction_id}): a person must \
             credit or refund it",
            total_fee.map_or("money".to_owned(), |fen| format!("{fen} fen"))
        ),
        Ok(_) => why,
        Err(error) => format!("{why}; {error}"),
    }
}

fn describe(payment: &ImportedPayment) -> String {
    match payment {
        ImportedPayment::NotStarted => "unpaid (never sent to WeChat Pay)".into(),
        ImportedPayment::Started { .. } => "unpaid (payment started at WeChat Pay; watched)".into(),
        ImportedPayment::Closed => "closed".into(),
        ImportedPayment::Paid { recharge, .. } => match recharge {
            ImportedRecharge::NotSent => "paid, pending (to the workers)".into(),
            ImportedRecharge::Credited { .. } => "paid, success".into(),
            ImportedRecharge::MaybeSent { .. } => {
                "paid, unknown (a person checks with Unitel)".into()
            }
        },
    }
}

/// An order that may be sent to Unitel from here (paid and never sent, or unpaid: its
/// payment completes here, by the payment watch or the platform's retried callback) is
/// first claimed in the replaced system, so that an instance of it still running cannot
/// send it too. If that system claimed it first, since the import read it, it may be
/// sending it: a paid order becomes `unknown`; an unpaid one (paid there meanwhile) is left
/// for the next run, which reads it as it is now. A paid order that is `unknown` because
/// that system claimed it without a `seq_id` gets its claim frozen there, so that it is not
/// sent again there while a person settles it here.
async fn claim_there(
    legacy: &LegacyDb,
    order: &LegacyOrder,
    payment: ImportedPayment,
) -> Result<ImportedPayment, String> {
    let may_be_sent_here = matches!(
        payment,
        ImportedPayment::NotStarted
            | ImportedPayment::Started { .. }
            | ImportedPayment::Paid {
                recharge: ImportedRecharge::NotSent,
                ..
            }
    );
    let unreachable = |e: sqlx::Error| {
        format!("the replaced system's database could not be updated ({e}); run the import again")
    };
    if let ImportedPayment::Paid {
        recharge: ImportedRecharge::MaybeSent { .. },
        ..
    } = payment
    {
        // Its cron would take its own claim back once ten minutes old and send the top-up
        // again, while a person here settles it (perhaps refunding it).
        legacy
            .freeze(&order.order_number)
            .await
            .map_err(unreachable)?;
        return Ok(payment);
    }
    if !may_be_sent_here || order.claimed_by_import() {
        return Ok(payment);
    }
    if legacy
        .claim(&order.order_number)
        .await
        .map_err(unreachable)?
    {
        return Ok(payment);
    }
    let (claimed_at, seq_id) = legacy
        .claim_of(&order.order_number)
        .await
        .map_err(unreachable)?;
    match payment {
        ImportedPayment::Paid {
            transaction_id,
            paid_at,
            ..
        } => {
            legacy
                .freeze(&order.order_number)
                .await
                .map_err(unreachable)?;
            Ok(ImportedPayment::Paid {
                transaction_id,
                paid_at,
                recharge: ImportedRecharge::MaybeSent {
                    claimed_at,
                    seq_id,
                    reason: "the replaced system, still running, claimed the top-up while it \
                             was being imported: check with Unitel"
                        .into(),
                },
            })
        }
        _ => Err(
            "the replaced system, still running, claimed it for a top-up while it was being \
             imported (paid there meanwhile?); run the import again"
                .into(),
        ),
    }
}

/// One order: checked, asked about at WeChat, claimed in the replaced system and created
/// here (unless a dry run). Ok(None) when it is here already.
async fn import_order(
    db: &PgPool,
    wechat: &WechatPay,
    legacy: &LegacyDb,
    order: &LegacyOrder,
    dry_run: bool,
) -> Result<Option<OrderLine>, String> {
    let product = match plan::product(order) {
        Ok(product) => product,
        Err(why) => return Err(with_money_taken(wechat, order, why).await),
    };
    if orders::exists(db, &product.order_number)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(None);
    }
    let openid =
        OpenId::parse(&order.openid).map_err(|_| "its user was not imported".to_owned())?;
    let user_id = match users::id_of(db, &openid).await.map_err(|e| e.to_string())? {
        Some(id) => id,
        // A dry run created no user; a real run would have.
        None if dry_run => 0,
        None => return Err("its user was not imported".into()),
    };
    let at_wechat = ask_wechat(wechat, &product.order_number).await?;
    let mut payment = plan::payment(order, product.amount, &at_wechat)?;
    if !dry_run {
        payment = claim_there(legacy, order, payment).await?;
    }
    let line = OrderLine {
        order_number: order.order_number.clone(),
        was: format!(
            "{}/{}",
            order.payment_status,
            order.recharge_status.as_deref().unwrap_or("null")
        ),
        becomes: describe(&payment),
        created: true,
    };
    if dry_run {
        return Ok(Some(line));
    }
    let imported = ImportedOrder {
        order: NewOrder {
            order_number: &product.order_number,
            user_id,
            openid: &openid,
            msisdn: &product.msisdn,
            // The replaced system sold Unitel only.
            operator: Operator::Unitel,
            recharge_type: product.recharge_type,
            product_code: &order.product_code,
            product_name: &order.product_name,
            product_eng_name: order.product_eng_name.as_deref(),
            product_unit: order.product_unit,
            product_data: order.product_data.as_deref(),
            product_days: order.product_days,
            price: product.price,
            rate: product.rate,
            amount: product.amount,
            channel: PayChannel::Cloud,
        },
        created_at: order.created_at,
        payment,
        source: json!({"legacyRow": order, "wechat": format!("{at_wechat:?}")}),
    };
    let created = lifecycle::import_order(db, &imported)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(OrderLine { created, ..line }))
}

/// Brings everything over (or, with `dry_run`, says what it would do).
pub async fn run(
    db: &PgPool,
    wechat: &WechatPay,
    legacy: MySqlConnectOptions,
    dry_run: bool,
) -> anyhow::Result<Report> {
    let legacy = LegacyDb::connect(legacy)
        .await
        .context("connecting to the replaced system's database (--from)")?;
    let mut report = Report {
        dry_run,
        ..Report::default()
    };

    for user in legacy.users().await.context("reading users")? {
        let Ok(openid) = OpenId::parse(&user.openid) else {
            report.not_imported.push((
                format!("user {:?}", user.openid),
                "not a WeChat openid".into(),
            ));
            continue;
        };
        let created = if dry_run {
            users::id_of(db, &openid).await?.is_none()
        } else {
            users::import(
                db,
                &openid,
                user.unionid.as_deref(),
                user.appid.as_deref(),
                user.created_at,
            )
            .await?
        };
        if created {
            report.users_created += 1;
        } else {
            report.users_present += 1;
        }
    }

    if let Some(rate) = legacy.rate().await.context("reading the exchange rate")? {
        let set_by = format!(
            "{}: the replaced system's rate of {}",
            Actor::Import,
            rate.updated_at.to_rfc3339()
        );
        match MntPerYuan::new(rate.rate.normalize()) {
            Ok(value) if !rates::set_by_exists(db, &set_by).await? => {
                if !dry_run {
                    rates::set(db, value, &set_by).await?;
                }
                report.rate_imported = Some(value);
            }
            Ok(_) => {}
            Err(_) => report.not_imported.push((
                "exchange rate".into(),
                format!("{} is not a usable rate", rate.rate),
            )),
        }
    }

    let legacy_orders = legacy.orders().await.context("reading orders")?;
    let there = &legacy;
    let results: Vec<_> = futures::stream::iter(&legacy_orders)
        .map(|order| async move { (order, import_order(db, wechat, there, order, dry_run).await) })
        .buffered(WECHAT_CONCURRENCY)
        .collect()
        .await;
    for (order, result) in results {
        match result {
            Ok(Some(line)) => report.orders.push(line),
            Ok(None) => report.orders.push(OrderLine {
                order_number: order.order_number.clone(),
                was: String::new(),
                becomes: "already here".into(),
                created: false,
            }),
            Err(why) => report
                .not_imported
                .push((format!("order {}", order.order_number), why)),
        }
    }
    legacy.close().await;
    Ok(report)
}

/// Where the replaced system's database is, with its password from anywhere but the
/// command line (`ps` and the shell's history show it there): the URL from `--from` (which
/// must not carry the password) or `LEGACY_DATABASE_URL`; the password from
/// `--password-file`, else `LEGACY_DATABASE_PASSWORD`, else the URL of the environment.
fn legacy_source(
    from: Option<String>,
    url_env: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
) -> anyhow::Result<MySqlConnectOptions> {
    if let Some(from) = &from {
        if reqwest::Url::parse(from).is_ok_and(|url| url.password().is_some()) {
            anyhow::bail!(
                "--from carries a password, which `ps` and the shell's history show: give the \
                 URL without it and the password in {PASSWORD_ENV} or a file (--password-file \
                 PATH), or the whole URL in LEGACY_DATABASE_URL"
            );
        }
    }
    let url = from.or(url_env).context(USAGE)?;
    // The parser's error could quote the URL, and with it a password from the environment.
    let options = MySqlConnectOptions::from_str(&url)
        .map_err(|_| anyhow::anyhow!("the replaced system's database is not a mysql:// URL"))?;
    let password = match password_file {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading the password file {}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        ),
        None => password_env,
    };
    Ok(match password {
        Some(password) => options.password(&password),
        None => options,
    })
}

/// The command line (see [`USAGE`]), with this service's own settings (DATABASE_URL,
/// WECHAT_*) from the environment. Returns the exit status.
pub async fn command(args: impl Iterator<Item = String>) -> anyhow::Result<i32> {
    let mut from = None;
    let mut password_file = None;
    let mut dry_run = false;
    let mut args = args;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--from" => from = Some(args.next().context("--from needs a mysql:// URL")?),
            "--password-file" => {
                password_file = Some(PathBuf::from(
                    args.next().context("--password-file needs a path")?,
                ))
            }
            "--dry-run" => dry_run = true,
            other => anyhow::bail!("unknown argument {other:?}: {USAGE}"),
        }
    }
    let legacy = legacy_source(
        from,
        std::env::var("LEGACY_DATABASE_URL").ok(),
        password_file,
        std::env::var(PASSWORD_ENV).ok(),
    )?;
    let config =
        crate::ApiConfig::from_env().context("import-legacy needs the service's settings")?;
    let db =
        shared::db::connect(&config.infra.database_url, 4, "payment-api import-legacy").await?;
    crate::MIGRATOR
        .run(&db)
        .await
        .context("applying migrations")?;
    let wechat = WechatPay::from_settings(config.wechat.as_ref(), config.direct.as_ref())?;
    let report = run(&db, &wechat, legacy, dry_run).await?;
    print!("{report}");
    db.close().await;
    Ok(if report.not_imported.is_empty() {
        0
    } else {
        SOME_ROWS_NOT_IMPORTED
    })
}
