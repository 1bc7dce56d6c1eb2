//! The senders: PutMetricData, PutLogEvents (creating the stream when missing) and PutEvents,
//! each putting back on the queue what failed for a transient reason.

use super::{
    clients::Clients,
    queue::Shared,
    retry::{Fate, THROTTLING, classify, status},
};
use crate::{
    config::Config,
    model::{self, BusEvent, Datum, LogEvent, Unit},
};
use anyhow::Result;
use aws_sdk_cloudwatch::error::DisplayErrorContext;

/// Sends data; false if some went back to the queue.
pub(super) async fn send_metrics(
    cfg: &Config,
    shared: &Shared,
    clients: &Clients,
    data: Vec<Datum>,
) -> bool {
    if data.is_empty() {
        return true;
    }
    let mut reqs = model::batch_metrics(
        &cfg.namespace,
        data,
        cfg.max_datums_per_request,
        cfg.max_request_bytes,
    )
    .into_iter();
    while let Some(req) = reqs.next() {
        let n = req.data.len() as u64;
        let sdk_data: Vec<_> = req.data.iter().map(to_sdk).collect();
        let r = clients
            .cloudwatch
            .put_metric_data()
            .namespace(&req.namespace)
            .set_metric_data(Some(sdk_data))
            .send()
            .await;
        let mut q = shared.lock();
        q.stats.requests += 1;
        match r {
            Ok(_) => q.stats.datums_sent += n,
            Err(e) => match classify(&e, status(&e)) {
                Fate::Reject => {
                    q.stats.datums_rejected += n;
                    tracing::warn!(error = %DisplayErrorContext(&e), datums = n, "CloudWatch refused metric data");
                }
                Fate::Retry => {
                    q.stats.failures += 1;
                    drop(q);
                    tracing::warn!(error = %DisplayErrorContext(&e), datums = n, "PutMetricData failed; the data stays queued");
                    let mut back = req.data;
                    back.extend(reqs.flat_map(|r| r.data));
                    shared.requeue_metrics(back);
                    return false;
                }
            },
        }
    }
    true
}

/// One small request of data that are not in the queue; the number sent.
pub(super) async fn put_metrics(cfg: &Config, clients: &Clients, data: Vec<Datum>) -> Result<u64> {
    let n = data.len() as u64;
    clients
        .cloudwatch
        .put_metric_data()
        .namespace(&cfg.namespace)
        .set_metric_data(Some(data.iter().map(to_sdk).collect()))
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(error = %DisplayErrorContext(&e), "PutMetricData failed");
            anyhow::anyhow!("PutMetricData failed")
        })?;
    Ok(n)
}

pub(super) fn to_sdk(d: &Datum) -> aws_sdk_cloudwatch::types::MetricDatum {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
    let unit = match d.unit {
        Unit::Count => StandardUnit::Count,
        Unit::Microseconds => StandardUnit::Microseconds,
        Unit::Bytes => StandardUnit::Bytes,
    };
    let mut b = MetricDatum::builder()
        .metric_name(d.metric_name)
        .set_dimensions(Some(
            d.dimensions
                .iter()
                .map(|x| Dimension::builder().name(x.name).value(&x.value).build())
                .collect(),
        ))
        .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
            d.timestamp,
        ))
        .unit(unit)
        .storage_resolution(d.storage_resolution as i32)
        .set_value(d.value);
    if !d.values.is_empty() {
        b = b
            .set_values(Some(d.values.clone()))
            .set_counts(Some(d.counts.clone()));
    }
    b.build()
}

pub(super) async fn ensure_log_stream(
    clients: &Clients,
    group: &str,
    stream: &str,
) -> Result<(), String> {
    match clients
        .logs
        .create_log_group()
        .log_group_name(group)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_already_exists_exception()) => {}
        Err(e) => return Err(DisplayErrorContext(&e).to_string()),
    }
    match clients
        .logs
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_already_exists_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(DisplayErrorContext(&e).to_string()),
    }
}

pub(super) async fn send_logs(
    cfg: &Config,
    shared: &Shared,
    clients: &Clients,
    stream: &str,
    ready: &mut bool,
    events: Vec<LogEvent>,
) -> bool {
    if events.is_empty() {
        return true;
    }
    if !*ready {
        match ensure_log_stream(clients, &cfg.log_group, stream).await {
            Ok(()) => *ready = true,
            Err(e) => {
                tracing::warn!(error = %e, group = %cfg.log_group, "CloudWatch Logs: creating the log group/stream failed; events stay queued");
                shared.lock().stats.failures += 1;
                shared.requeue_logs(events);
                return false;
            }
        }
    }
    let mut batches = model::batch_logs(events).into_iter();
    while let Some(batch) = batches.next() {
        let n = batch.len() as u64;
        let sdk: Vec<_> = batch
            .iter()
            .filter_map(|e| {
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(e.timestamp)
                    .message(&e.message)
                    .build()
                    .ok()
            })
            .collect();
        let r = clients
            .logs
            .put_log_events()
            .log_group_name(&cfg.log_group)
            .log_stream_name(stream)
            .set_log_events(Some(sdk))
            .send()
            .await;
        let mut q = shared.lock();
        q.stats.requests += 1;
        match r {
            Ok(out) => {
                let rejected = out.rejected_log_events_info().map_or(0, |i| {
                    let old = i.too_old_log_event_end_index().map_or(0, |x| x + 1);
                    let exp = i.expired_log_event_end_index().map_or(0, |x| x + 1);
                    let new = i
                        .too_new_log_event_start_index()
                        .map_or(0, |x| n as i32 - x);
                    old.max(exp) as u64 + new.max(0) as u64
                });
                if rejected > 0 {
                    tracing::warn!(
                        rejected,
                        "CloudWatch Logs refused events (too old or too new)"
                    );
                }
                q.stats.log_events_rejected += rejected.min(n);
                q.stats.log_events_sent += n - rejected.min(n);
            }
            Err(e) => {
                let not_found = e
                    .as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception());
                let fate = if not_found {
                    Fate::Retry
                } else {
                    classify(&e, status(&e))
                };
                match fate {
                    Fate::Reject => {
                        q.stats.log_events_rejected += n;
                        tracing::warn!(error = %DisplayErrorContext(&e), events = n, "CloudWatch Logs refused events");
                    }
                    Fate::Retry => {
                        q.stats.failures += 1;
                        drop(q);
                        if not_found {
                            *ready = false;
                        }
                        tracing::warn!(error = %DisplayErrorContext(&e), events = n, "PutLogEvents failed; the events stay queued");
                        let mut back = batch;
                        back.extend(batches.flatten());
                        shared.requeue_logs(back);
                        return false;
                    }
                }
            }
        }
    }
    true
}

pub(super) async fn send_bus(
    cfg: &Config,
    shared: &Shared,
    clients: &Clients,
    events: Vec<BusEvent>,
) -> bool {
    let (Some(client), Some(bus_name)) = (&clients.events, &cfg.eventbridge_bus) else {
        return true;
    };
    let mut back = Vec::new();
    let mut batches = model::batch_bus(events).into_iter();
    while let Some(batch) = batches.next() {
        let entries: Vec<_> = batch
            .iter()
            .map(|e| {
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .time(aws_sdk_eventbridge::primitives::DateTime::from_millis(
                        e.timestamp,
                    ))
                    .source(e.source)
                    .detail_type(e.detail_type)
                    .detail(&e.detail)
                    .event_bus_name(bus_name)
                    .build()
            })
            .collect();
        let r = client.put_events().set_entries(Some(entries)).send().await;
        let mut q = shared.lock();
        q.stats.requests += 1;
        match r {
            Ok(out) => {
                for (e, res) in batch.into_iter().zip(out.entries()) {
                    match res.error_code() {
                        None => q.stats.bus_events_sent += 1,
                        Some(c) if THROTTLING.contains(&c) => back.push(e),
                        Some(c) => {
                            q.stats.bus_events_rejected += 1;
                            tracing::warn!(
                                code = c,
                                message = res.error_message().unwrap_or(""),
                                "EventBridge refused a finding"
                            );
                        }
                    }
                }
            }
            Err(e) => match classify(&e, status(&e)) {
                Fate::Reject => {
                    q.stats.bus_events_rejected += batch.len() as u64;
                    tracing::warn!(error = %DisplayErrorContext(&e), "EventBridge refused findings");
                }
                Fate::Retry => {
                    q.stats.failures += 1;
                    drop(q);
                    tracing::warn!(error = %DisplayErrorContext(&e), "PutEvents failed; the findings stay queued");
                    back.extend(batch);
                    back.extend(batches.flatten());
                    break;
                }
            },
        }
    }
    let ok = back.is_empty();
    if !ok {
        shared.requeue_bus(back);
    }
    ok
}
