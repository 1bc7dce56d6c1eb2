//! The sender thread every AWS sink runs (CloudWatch, Security Hub): its own current-thread
//! tokio runtime, so the pipeline never waits on the network; the SDK configuration (the
//! caller's, or the standard chains); the sink's clients, whose failure (no region, a bad
//! setting) is returned to the caller before it goes on; then the sending loop.

use crate::config::Config;
use anyhow::{Context, Result, anyhow};
use aws_sdk_cloudwatch::config::ProvideCredentials;
use std::{future::Future, sync::Arc, thread::JoinHandle};

/// Starts the thread; returns once the clients are made (or with why they could not be).
/// `done` runs on the thread when the loop ends, however it ends.
pub(crate) fn spawn<C, Fut>(
    name: &str,
    stack_bytes: Option<usize>,
    cfg: Arc<Config>,
    sdk: Option<aws_config::SdkConfig>,
    clients: impl FnOnce(&aws_config::SdkConfig, &Config) -> Result<C> + Send + 'static,
    work: impl FnOnce(C) -> Fut + Send + 'static,
    done: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>>
where
    Fut: Future<Output = ()>,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    let mut b = std::thread::Builder::new().name(name.into());
    if let Some(n) = stack_bytes {
        b = b.stack_size(n);
    }
    let thread = b
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async {
                let sdk = match sdk {
                    Some(s) => s,
                    None => super::Clients::sdk_config(&cfg).await,
                };
                // Credentials once, now: without them every request would fail after the
                // SDK's retries, each failure listing every provider of the chain.
                if let Some(p) = sdk.credentials_provider()
                    && let Err(e) = p.provide_credentials().await
                {
                    let _ = ready_tx.send(Err(no_credentials(&e)));
                    return;
                }
                match clients(&sdk, &cfg) {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        work(c).await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
            done();
        })
        .with_context(|| format!("starting the {name} thread"))?;
    ready_rx
        .recv()
        .with_context(|| format!("the {name} thread stopped while starting"))??;
    Ok(thread)
}

/// One line that says what to do (the SDK's own error lists every provider it tried).
fn no_credentials(e: &dyn std::fmt::Display) -> anyhow::Error {
    let why = e.to_string();
    let why = why.lines().next().unwrap_or_default();
    anyhow!(
        "no AWS credentials ({why}): the standard chain (environment, shared config and \
         credentials files, web identity, ECS/EKS container, EC2 instance metadata) gave none; \
         set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or give the instance \
         a role"
    )
}
