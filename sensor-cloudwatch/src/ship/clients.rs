//! The AWS SDK clients, from the standard configuration chains.

use crate::config::Config;
use anyhow::{Result, bail};
use aws_config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
use std::time::Duration;

/// The AWS clients, from the standard configuration chain.
pub struct Clients {
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub events: Option<aws_sdk_eventbridge::Client>,
}

impl Clients {
    /// The standard chains, with the settings' region and endpoint over them if given.
    pub async fn sdk_config(cfg: &Config) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = &cfg.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(u) = &cfg.endpoint_url {
            loader = loader.endpoint_url(u);
        }
        loader.load().await
    }

    /// Clients on `sdk` (credentials, region, endpoints), with the settings' retries,
    /// timeouts and compression.
    pub fn from_sdk(sdk: &aws_config::SdkConfig, cfg: &Config) -> Result<Self> {
        require_region(sdk)?;
        let (retry, timeouts) = policies(cfg);
        let cw = aws_sdk_cloudwatch::config::Builder::from(sdk)
            .retry_config(retry.clone())
            .timeout_config(timeouts.clone())
            .request_min_compression_size_bytes(cfg.compression_min_bytes)
            .build();
        let logs = aws_sdk_cloudwatchlogs::config::Builder::from(sdk)
            .retry_config(retry.clone())
            .timeout_config(timeouts.clone())
            .build();
        let events = aws_sdk_eventbridge::config::Builder::from(sdk)
            .retry_config(retry)
            .timeout_config(timeouts)
            .build();
        Ok(Self {
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(cw),
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(logs),
            events: cfg
                .eventbridge_bus
                .as_ref()
                .map(|_| aws_sdk_eventbridge::Client::from_conf(events)),
        })
    }
}

/// Fails early, saying how to fix it, rather than on every call.
pub(crate) fn require_region(sdk: &aws_config::SdkConfig) -> Result<String> {
    match sdk.region() {
        Some(r) if !r.as_ref().is_empty() => Ok(r.to_string()),
        _ => bail!(
            "no AWS region: set AWS_REGION (or a profile's region), or run on EC2 where the instance metadata gives it"
        ),
    }
}

/// The settings' SDK retries (standard mode) and timeouts, for every client.
pub(crate) fn policies(cfg: &Config) -> (RetryConfig, TimeoutConfig) {
    let retry = RetryConfig::standard()
        .with_max_attempts(cfg.max_attempts.max(1))
        .with_initial_backoff(Duration::from_millis(cfg.backoff_initial_ms.max(1)))
        .with_max_backoff(Duration::from_millis(cfg.backoff_max_ms.max(1)));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
        .operation_attempt_timeout(Duration::from_millis(cfg.attempt_timeout_ms))
        .build();
    (retry, timeouts)
}
