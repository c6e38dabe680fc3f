//! `sandbox serve` runs both simulators; `sandbox pay <outTradeNo>` plays the paying user
//! against a running one.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use sandbox::{BillsReady, Sandbox, SandboxConfig};

const USAGE: &str = "\
usage:
  sandbox serve [--host H] [--wechat-port P] [--unitel-port P] [--callback-base URL]
                [--merchant-id ID]
  sandbox pay <outTradeNo> [--url http://127.0.0.1:8081]

serve reads (flags win): SANDBOX_HOST (127.0.0.1; 0.0.0.0 in docker), SANDBOX_WECHAT_PORT
(8081), SANDBOX_UNITEL_PORT (8082), SANDBOX_CALLBACK_BASE (http://127.0.0.1:3000),
WECHAT_MCH_ID (1712734762), UNITEL_USERNAME / UNITEL_PASSWORD (elife / elife-secret),
SANDBOX_TOKEN_TTL_SECS (120), SANDBOX_CLOSE_MIN_AGE_SECS (300),
SANDBOX_REFUND_DELAY_MS (100), SANDBOX_CALLBACK_RETRY_MS (comma-separated waits; default
WeChat Pay's 15s/15s/30s/3m/... schedule), SANDBOX_BILLS_READY (platform: day D's
bill from 10:00 China time on D+1; immediately: any day up to today at once). Logs
follow RUST_LOG (default info).

APIv3 (direct WeChat Pay): WECHAT_MERCHANT_SERIAL registers the merchant, with
WECHAT_APP_ID, WECHAT_MCH_ID, WECHAT_SP_MCH_ID + WECHAT_SP_APP_ID (partner form),
WECHAT_API_V3_KEY(_FILE), and SANDBOX_MERCHANT_PUBLIC_KEY_FILE (or the public half of
WECHAT_MERCHANT_PRIVATE_KEY(_FILE)). SANDBOX_V3_KEYS_DIR receives the simulator's
wechatpay_public_key.pem, wechatpay_public_key_id and platform_certificate.pem;
SANDBOX_V3_SIGNER (publicKey | certificate) chooses the signing key.";

#[derive(Debug, PartialEq)]
enum Command {
    Serve(HashMap<String, String>),
    Pay { out_trade_no: String, url: String },
    Help,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sandbox: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> anyhow::Result<()> {
    match parse_args(args)? {
        Command::Help => println!("{USAGE}"),
        Command::Serve(flags) => {
            let config = serve_config(&flags, |name| std::env::var(name).ok())?;
            serve(config).await?;
        }
        Command::Pay { out_trade_no, url } => {
            println!("{}", pay(&url, &out_trade_no).await?);
        }
    }
    Ok(())
}

fn parse_args(args: &[String]) -> anyhow::Result<Command> {
    let Some((command, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    let mut positional = Vec::new();
    let mut flags = HashMap::new();
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        if let Some(name) = arg.strip_prefix("--") {
            let (name, value) = match name.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => {
                    let value = rest
                        .next()
                        .with_context(|| format!("--{name} needs a value\n\n{USAGE}"))?;
                    (name.to_owned(), value.clone())
                }
            };
            flags.insert(name, value);
        } else {
            positional.push(arg.clone());
        }
    }
    match command.as_str() {
        "serve" if positional.is_empty() => Ok(Command::Serve(flags)),
        "pay" if positional.len() == 1 => Ok(Command::Pay {
            out_trade_no: positional.remove(0),
            url: flags
                .remove("url")
                .unwrap_or_else(|| "http://127.0.0.1:8081".to_owned()),
        }),
        "help" | "--help" | "-h" => Ok(Command::Help),
        _ => bail!("unexpected arguments: {}\n\n{USAGE}", args.join(" ")),
    }
}

/// The serve settings from flags, then the environment, then the defaults.
fn serve_config(
    flags: &HashMap<String, String>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<SandboxConfig> {
    let setting = |flag: &str, var: &str, default: &str| -> String {
        flags
            .get(flag)
            .cloned()
            .or_else(|| env(var).filter(|value| !value.trim().is_empty()))
            .unwrap_or_else(|| default.to_owned())
    };
    let number = |flag: &str, var: &str, default: &str| -> anyhow::Result<u64> {
        let text = setting(flag, var, default);
        text.trim()
            .parse()
            .with_context(|| format!("{var} (--{flag}) must be a whole number, not {text:?}"))
    };

    let host: IpAddr = setting("host", "SANDBOX_HOST", "127.0.0.1")
        .parse()
        .context("SANDBOX_HOST must be an IP address")?;
    let wechat_port = u16::try_from(number("wechat-port", "SANDBOX_WECHAT_PORT", "8081")?)?;
    let unitel_port = u16::try_from(number("unitel-port", "SANDBOX_UNITEL_PORT", "8082")?)?;
    let retry_delays = match env("SANDBOX_CALLBACK_RETRY_MS").filter(|v| !v.trim().is_empty()) {
        None => SandboxConfig::platform_retry_delays(),
        Some(list) => list
            .split(',')
            .map(|ms| ms.trim().parse().map(Duration::from_millis))
            .collect::<Result<_, _>>()
            .context("SANDBOX_CALLBACK_RETRY_MS must be comma-separated milliseconds")?,
    };

    let mut config = SandboxConfig::for_tests(setting(
        "callback-base",
        "SANDBOX_CALLBACK_BASE",
        "http://127.0.0.1:3000",
    ));
    config.wechat_addr = SocketAddr::new(host, wechat_port);
    config.unitel_addr = SocketAddr::new(host, unitel_port);
    config.merchant_id = setting("merchant-id", "WECHAT_MCH_ID", "1712734762");
    config.unitel_username = setting("unitel-username", "UNITEL_USERNAME", "elife");
    config.unitel_password = env("UNITEL_PASSWORD")
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| "elife-secret".to_owned());
    config.token_ttl =
        Duration::from_secs(number("token-ttl-secs", "SANDBOX_TOKEN_TTL_SECS", "120")?);
    config.close_min_age = Duration::from_secs(number(
        "close-min-age-secs",
        "SANDBOX_CLOSE_MIN_AGE_SECS",
        "300",
    )?);
    config.refund_delay =
        Duration::from_millis(number("refund-delay-ms", "SANDBOX_REFUND_DELAY_MS", "100")?);
    config.callback_retry_delays = retry_delays;
    config.bills_ready = match setting("bills-ready", "SANDBOX_BILLS_READY", "platform")
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "platform" => BillsReady::Platform,
        "immediately" => BillsReady::Immediately,
        other => bail!("SANDBOX_BILLS_READY must be platform or immediately, not {other:?}"),
    };
    Ok(config)
}

async fn serve(config: SandboxConfig) -> anyhow::Result<()> {
    let sandbox = Sandbox::start(config).await?;
    sandbox.configure_v3_from_env(|name| std::env::var(name).ok())?;
    tracing::info!(
        wechat_api_base = %sandbox.wechat_url(),
        unitel_api_url = %sandbox.unitel_url(),
        control = %sandbox.control_url(),
        wechat_pay_public_key_id = %sandbox.wechat_pay_public_key_id(),
        "sandbox ready"
    );
    wait_for_stop_signal().await?;
    sandbox.shutdown().await;
    Ok(())
}

/// Ctrl-C in a terminal, SIGTERM from docker.
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn pay(url: &str, out_trade_no: &str) -> anyhow::Result<String> {
    let endpoint = format!("{}/sandbox/wechat/pay", url.trim_end_matches('/'));
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .post(&endpoint)
        .json(&serde_json::json!({ "outTradeNo": out_trade_no }))
        .send()
        .await
        .with_context(|| format!("calling {endpoint}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("reading the answer of {endpoint}"))?;
    match body["transactionId"].as_str() {
        Some(transaction_id) if status.is_success() => Ok(transaction_id.to_owned()),
        _ => bail!("{endpoint} answered {status}: {body}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn pay_takes_an_order_number_and_an_optional_url() {
        assert_eq!(
            parse_args(&args("pay ORD1 --url http://sandbox:8081")).unwrap(),
            Command::Pay {
                out_trade_no: "ORD1".into(),
                url: "http://sandbox:8081".into()
            }
        );
        assert_eq!(
            parse_args(&args("pay ORD1")).unwrap(),
            Command::Pay {
                out_trade_no: "ORD1".into(),
                url: "http://127.0.0.1:8081".into()
            }
        );
        assert!(parse_args(&args("pay")).is_err());
        assert!(parse_args(&args("frobnicate")).is_err());
    }

    #[test]
    fn bills_can_be_ready_at_once_for_a_demo() {
        let env = HashMap::from([("SANDBOX_BILLS_READY".to_owned(), "immediately".to_owned())]);
        let config = serve_config(&HashMap::new(), |name| env.get(name).cloned()).unwrap();
        assert_eq!(config.bills_ready, BillsReady::Immediately);
        let env = HashMap::from([("SANDBOX_BILLS_READY".to_owned(), "soon".to_owned())]);
        assert!(serve_config(&HashMap::new(), |name| env.get(name).cloned()).is_err());
    }

    #[test]
    fn flags_win_over_the_environment_which_wins_over_defaults() {
        let Command::Serve(flags) = parse_args(&args("serve --wechat-port=9001")).unwrap() else {
            panic!("expected serve");
        };
        let env = HashMap::from([
            ("SANDBOX_WECHAT_PORT".to_owned(), "7001".to_owned()),
            ("SANDBOX_UNITEL_PORT".to_owned(), "7002".to_owned()),
            ("SANDBOX_HOST".to_owned(), "0.0.0.0".to_owned()),
            ("SANDBOX_CALLBACK_RETRY_MS".to_owned(), "10, 20".to_owned()),
        ]);
        let config = serve_config(&flags, |name| env.get(name).cloned()).unwrap();
        assert_eq!(config.wechat_addr, "0.0.0.0:9001".parse().unwrap());
        assert_eq!(config.unitel_addr, "0.0.0.0:7002".parse().unwrap());
        assert_eq!(config.merchant_id, "1712734762");
        assert_eq!(config.close_min_age, Duration::from_secs(300));
        assert_eq!(config.bills_ready, BillsReady::Platform);
        assert_eq!(
            config.callback_retry_delays,
            vec![Duration::from_millis(10), Duration::from_millis(20)]
        );
    }
}
