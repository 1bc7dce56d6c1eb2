//! [`AsffFinding`] to the SDK's `AwsSecurityFinding`, member for member.

use super::asff::{Action, AsffFinding, Network, Resource};
use aws_sdk_securityhub::types::{
    self as t, AwsSecurityFinding, FindingProviderFields, FindingProviderSeverity, SeverityLabel,
};

pub(super) fn finding(a: &AsffFinding) -> AwsSecurityFinding {
    let label = SeverityLabel::from(a.severity.label);
    AwsSecurityFinding::builder()
        .schema_version(a.schema_version)
        .id(&a.id)
        .product_arn(&a.product_arn)
        .product_name(a.product_name)
        .company_name(&a.company_name)
        .generator_id(&a.generator_id)
        .aws_account_id(&a.aws_account_id)
        .set_types(Some(a.types.clone()))
        .first_observed_at(&a.first_observed_at)
        .last_observed_at(&a.last_observed_at)
        .created_at(&a.created_at)
        .updated_at(&a.updated_at)
        .severity(
            t::Severity::builder()
                .label(label.clone())
                .normalized(a.severity.normalized)
                .original(&a.severity.original)
                .build(),
        )
        .finding_provider_fields(
            FindingProviderFields::builder()
                .severity(
                    FindingProviderSeverity::builder()
                        .label(label)
                        .original(&a.finding_provider_fields.severity.original)
                        .build(),
                )
                .set_types(Some(a.finding_provider_fields.types.clone()))
                .build(),
        )
        .title(&a.title)
        .description(&a.description)
        .set_remediation(a.remediation.as_ref().map(|r| {
            t::Remediation::builder()
                .recommendation(
                    t::Recommendation::builder()
                        .text(&r.recommendation.text)
                        .build(),
                )
                .build()
        }))
        .set_product_fields(Some(a.product_fields.clone().into_iter().collect()))
        .set_resources(Some(a.resources.iter().map(resource).collect()))
        .set_network(a.network.as_ref().map(network))
        .set_action(a.action.as_ref().map(action))
        .record_state(t::RecordState::from(a.record_state))
        .workflow(
            t::Workflow::builder()
                .status(t::WorkflowStatus::from(a.workflow.status))
                .build(),
        )
        .build()
}

fn resource(r: &Resource) -> t::Resource {
    let d = &r.details.rds;
    t::Resource::builder()
        .r#type(r.kind)
        .id(&r.id)
        .partition(t::Partition::from(r.partition.as_str()))
        .region(&r.region)
        .set_tags((!r.tags.is_empty()).then(|| r.tags.clone().into_iter().collect()))
        .details(
            t::ResourceDetails::builder()
                .aws_rds_db_instance(
                    t::AwsRdsDbInstanceDetails::builder()
                        .db_instance_identifier(&d.db_instance_identifier)
                        .set_engine(d.engine.clone())
                        .set_engine_version(d.engine_version.clone())
                        .set_db_cluster_identifier(d.db_cluster_identifier.clone())
                        .build(),
                )
                .build(),
        )
        .build()
}

fn network(n: &Network) -> t::Network {
    t::Network::builder()
        .direction(t::NetworkDirection::from(n.direction))
        .protocol(n.protocol)
        .set_source_ipv4(n.source_ip_v4.clone())
        .set_source_ipv6(n.source_ip_v6.clone())
        .set_destination_ipv4(n.destination_ip_v4.clone())
        .set_destination_ipv6(n.destination_ip_v6.clone())
        .set_destination_port(n.destination_port)
        .build()
}

fn action(a: &Action) -> t::Action {
    let c = &a.network_connection_action;
    let ip = &c.remote_ip_details;
    t::Action::builder()
        .action_type(a.action_type)
        .network_connection_action(
            t::NetworkConnectionAction::builder()
                .connection_direction(c.connection_direction)
                .protocol(c.protocol)
                .remote_ip_details(
                    t::ActionRemoteIpDetails::builder()
                        .set_ip_address_v4(ip.ip_address_v4.clone())
                        .set_organization(ip.organization.as_ref().map(|o| {
                            t::IpOrganizationDetails::builder()
                                .set_asn(o.asn)
                                .set_asn_org(o.asn_org.clone())
                                .set_isp(o.isp.clone())
                                .set_org(o.org.clone())
                                .build()
                        }))
                        .set_country(ip.country.as_ref().map(|k| {
                            t::Country::builder()
                                .set_country_code(k.country_code.clone())
                                .set_country_name(k.country_name.clone())
                                .build()
                        }))
                        .build(),
                )
                .set_local_port_details(
                    c.local_port_details
                        .as_ref()
                        .map(|p| t::ActionLocalPortDetails::builder().port(p.port).build()),
                )
                .build(),
        )
        .build()
}
