//! DescribeDBInstances: every instance with an endpoint, and what it says of itself.

use anyhow::{Context, Result};
use rds_sensor::aggregate::discovered::Discovered;

/// One instance's endpoint and description.
#[derive(Clone, Debug)]
pub struct Found {
    pub host: String,
    pub port: u16,
    pub info: Discovered,
}

pub async fn describe(client: &aws_sdk_rds::Client) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    let mut pages = client.describe_db_instances().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.context("DescribeDBInstances")?;
        for db in page.db_instances() {
            // An instance being created (or deleted) has no endpoint yet: nothing to name.
            let Some(ep) = db.endpoint() else { continue };
            let (Some(host), Some(port)) = (ep.address(), ep.port()) else {
                continue;
            };
            let Ok(port) = u16::try_from(port) else {
                continue;
            };
            out.push(Found {
                host: host.to_string(),
                port,
                info: Discovered {
                    db_instance_identifier: db
                        .db_instance_identifier()
                        .unwrap_or_default()
                        .to_string(),
                    db_cluster_identifier: db.db_cluster_identifier().map(str::to_string),
                    engine: db.engine().unwrap_or_default().to_string(),
                    engine_version: db.engine_version().map(str::to_string),
                    db_instance_arn: db.db_instance_arn().map(str::to_string),
                    tags: db
                        .tag_list()
                        .iter()
                        .filter_map(|t| {
                            Some((
                                t.key()?.to_string(),
                                t.value().unwrap_or_default().to_string(),
                            ))
                        })
                        .collect(),
                },
            });
        }
    }
    Ok(out)
}
