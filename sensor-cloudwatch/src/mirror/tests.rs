//! The planner on worlds AWS can be in, moto's limits aside: rules present, drifted or extra;
//! sessions foreign, ours, stale or at AWS's limit.

use super::observe::{FilterState, Instance, Session, Target, World};
use super::plan::{Shown, plan};
use super::{Action, Call, Ref, wanted_rules};
use rds_sensor::cli::MirrorSpec;

fn spec() -> MirrorSpec {
    MirrorSpec {
        instances: vec!["orders-pg".into(), "shop-my".into()],
        target_eni: Some("eni-sensor".into()),
        ..MirrorSpec::default()
    }
}

fn inst(id: &str, port: u16, ip: &str, eni: &str) -> Instance {
    Instance {
        id: id.into(),
        port: Some(port),
        addresses: vec![ip.parse().unwrap()],
        host: Some(format!("{id}.abc.us-east-1.rds.amazonaws.com")),
        enis: vec![eni.into()],
    }
}

fn session(id: &str, eni: &str, target: &str, filter: &str, number: i32, ours: bool) -> Session {
    Session {
        id: id.into(),
        eni: eni.into(),
        target: target.into(),
        filter: filter.into(),
        number,
        packet_length: None,
        ours,
    }
}

/// Nothing made yet.
fn bare() -> World {
    World {
        instances: vec![
            inst("orders-pg", 5432, "10.0.1.10", "eni-pg"),
            inst("shop-my", 3306, "10.0.2.20", "eni-my"),
        ],
        ..World::default()
    }
}

/// Everything in place, as a first apply leaves it.
fn done() -> World {
    let mut w = bare();
    w.targets = vec![Target {
        id: "tmt-1".into(),
        eni: Some("eni-sensor".into()),
        nlb: None,
        gwlbe: None,
    }];
    let mut rules = wanted_rules(&[3306, 5432], false);
    for (i, r) in rules.iter_mut().enumerate() {
        r.number = 100 * (i as i32 / 2 + 1);
        r.id = Some(format!("tmfr-{i}"));
    }
    w.filters = vec![FilterState {
        id: "tmf-1".into(),
        rules,
    }];
    w.sessions = vec![
        session("tms-pg", "eni-pg", "tmt-1", "tmf-1", 1, true),
        session("tms-my", "eni-my", "tmt-1", "tmf-1", 1, true),
    ];
    w
}

fn shown(p: &super::Plan) -> Vec<String> {
    p.calls
        .iter()
        .map(|c| Shown { call: c, plan: p }.to_string())
        .collect()
}

#[test]
fn from_nothing_everything_is_created_in_an_order_that_works() {
    let p = plan(&spec(), &bare(), Action::Apply).unwrap();
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let kinds: Vec<&str> = p
        .calls
        .iter()
        .map(|c| match c {
            Call::CreateTarget { .. } => "target",
            Call::CreateFilter => "filter",
            Call::CreateRule { .. } => "rule",
            Call::CreateSession { .. } => "session",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "target", "filter", "rule", "rule", "rule", "rule", "session", "session"
        ]
    );
    let lines = shown(&p);
    assert_eq!(
        lines[0],
        "aws ec2 create-traffic-mirror-target --network-interface-id eni-sensor --description rds-sensor \
         --tag-specifications 'ResourceType=traffic-mirror-target,Tags=[{Key=rds-sensor:mirror,Value=rds-sensor}]'"
    );
    // Into the database's port, and out of it, for each engine.
    assert!(lines[2].contains("--traffic-direction ingress --rule-number 100 --rule-action accept --protocol 6 --destination-port-range FromPort=3306,ToPort=3306 --source-cidr-block 0.0.0.0/0"), "{}", lines[2]);
    assert!(lines[3].contains("--traffic-direction egress --rule-number 100 --rule-action accept --protocol 6 --source-port-range FromPort=3306,ToPort=3306"), "{}", lines[3]);
    assert!(lines[4].contains("--rule-number 200") && lines[4].contains("5432"));
    assert!(lines[2].contains("--traffic-mirror-filter-id $FILTER"));
    assert!(
        lines[6].starts_with("aws ec2 create-traffic-mirror-session --network-interface-id eni-pg --traffic-mirror-target-id $TARGET --traffic-mirror-filter-id $FILTER --session-number 1 --description 'rds-sensor: orders-pg'"),
        "{}",
        lines[6]
    );
    assert!(lines[6].contains("{Key=rds-sensor:instance,Value=orders-pg}"));
    assert_eq!(p.enis, 2);
}

#[test]
fn in_place_plans_nothing() {
    for action in [Action::Plan, Action::Apply, Action::Reconcile] {
        let p = plan(&spec(), &done(), action).unwrap();
        assert_eq!(p.calls, [], "{action:?}");
        assert!(p.notes.is_empty() && p.problems.is_empty());
    }
}

#[test]
fn rules_that_drifted_are_replaced_and_numbers_never_collide() {
    let mut w = done();
    let f = &mut w.filters[0];
    // The 5432 egress rule is gone; a 1521 ingress rule someone added to our filter stays
    // matched by nothing we want.
    f.rules
        .retain(|r| r.ingress || r.src_ports != Some((5432, 5432)));
    let mut extra = wanted_rules(&[1521], false).remove(0);
    extra.number = 300;
    extra.id = Some("tmfr-x".into());
    f.rules.push(extra);
    let p = plan(&spec(), &w, Action::Apply).unwrap();
    match p.calls.as_slice() {
        [
            Call::DeleteRule { rule: gone },
            Call::CreateRule { filter, rule: new },
        ] => {
            assert_eq!(gone.id.as_deref(), Some("tmfr-x"));
            assert_eq!(filter, &Ref::Existing("tmf-1".into()));
            assert!(!new.ingress && new.src_ports == Some((5432, 5432)));
            // 100 is the 3306 egress rule's.
            assert_eq!(new.number, 200);
        }
        other => panic!("{other:?}"),
    }
    assert!(shown(&p)[0].starts_with(
        "aws ec2 delete-traffic-mirror-filter-rule --traffic-mirror-filter-rule-id tmfr-x  # ingress #300 accept proto 6 0.0.0.0/0 -> 0.0.0.0/0:1521"
    ));
}

#[test]
fn a_session_is_repaired_in_place_not_duplicated() {
    let mut w = done();
    w.sessions[0].filter = "tmf-other".into();
    w.sessions[1].packet_length = Some(128);
    let p = plan(&spec(), &w, Action::Apply).unwrap();
    assert_eq!(
        p.calls,
        [
            Call::ModifySession {
                id: "tms-pg".into(),
                eni: "eni-pg".into(),
                target: None,
                filter: Some(Ref::Existing("tmf-1".into())),
                packet_length: false,
            },
            Call::ModifySession {
                id: "tms-my".into(),
                eni: "eni-my".into(),
                target: None,
                filter: None,
                packet_length: true,
            },
        ]
    );
    assert_eq!(
        shown(&p)[1],
        "aws ec2 modify-traffic-mirror-session --traffic-mirror-session-id tms-my --remove-fields packet-length"
    );
    let mut s = spec();
    s.packet_length = Some(128);
    let p = plan(&s, &w, Action::Apply).unwrap();
    assert!(
        shown(&p).iter().all(|l| !l.contains("tms-my")),
        "128 is what tms-my has"
    );
}

#[test]
fn a_failover_moves_the_session_and_only_reconcile_deletes_the_old_one() {
    let mut w = done();
    w.instances[0] = inst("orders-pg", 5432, "10.0.1.77", "eni-pg-new");
    let p = plan(&spec(), &w, Action::Apply).unwrap();
    assert!(matches!(
        p.calls.as_slice(),
        [Call::CreateSession { eni, target: Ref::Existing(t), filter: Ref::Existing(f), number: 1, .. }]
            if eni == "eni-pg-new" && t == "tmt-1" && f == "tmf-1"
    ));
    assert!(p.notes[0].contains("tms-pg on eni-pg") && p.notes[0].contains("reconcile"));
    let p = plan(&spec(), &w, Action::Reconcile).unwrap();
    assert_eq!(
        p.calls[1],
        Call::DeleteSession {
            id: "tms-pg".into(),
            eni: "eni-pg".into()
        }
    );
}

#[test]
fn other_peoples_sessions_are_left_alone_and_counted() {
    let mut w = done();
    w.sessions.retain(|s| s.eni != "eni-pg");
    // Someone else's session on our interface, number 1, and one on another interface.
    w.sessions
        .push(session("tms-ids", "eni-pg", "tmt-ids", "tmf-ids", 1, false));
    w.sessions.push(session(
        "tms-elsewhere",
        "eni-web",
        "tmt-1",
        "tmf-x",
        1,
        false,
    ));
    let p = plan(&spec(), &w, Action::Reconcile).unwrap();
    assert!(matches!(
        p.calls.as_slice(),
        [Call::CreateSession { eni, number: 2, .. }] if eni == "eni-pg"
    ));
    for n in 2..=3 {
        w.sessions.push(session(
            &format!("tms-ids{n}"),
            "eni-pg",
            "tmt-ids",
            "tmf-ids",
            n,
            false,
        ));
    }
    let p = plan(&spec(), &w, Action::Reconcile).unwrap();
    assert_eq!(p.calls, []);
    assert!(
        p.problems[0].contains("eni-pg has 3 mirror sessions already"),
        "{:?}",
        p.problems
    );
}

#[test]
fn what_cannot_be_mirrored_is_said() {
    let mut w = bare();
    w.missing = vec!["gone-db".into()];
    w.instances[1].enis.clear();
    let p = plan(&spec(), &w, Action::Apply).unwrap();
    assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
    assert!(p.problems[0].contains("gone-db: RDS has no such instance"));
    assert!(p.problems[1].contains("shop-my: no network interface holds 10.0.2.20"));
    let p = plan(&spec(), &w, Action::Reconcile).unwrap();
    assert!(p.notes[0].contains("gone-db"), "the agent goes on");
    // Six engines' ports need 12 rules.
    let mut w = bare();
    for (i, port) in [1433u16, 1521, 5433, 3307].iter().enumerate() {
        w.instances.push(inst(
            &format!("db{i}"),
            *port,
            "10.0.9.9",
            &format!("eni-{i}"),
        ));
    }
    let e = plan(&spec(), &w, Action::Plan).unwrap_err().to_string();
    assert!(
        e.contains("6 ports") && e.contains("12 filter rules"),
        "{e}"
    );
    let mut s = spec();
    s.ports = vec![5432];
    let p = plan(&s, &w, Action::Plan).unwrap();
    assert_eq!(
        p.calls
            .iter()
            .filter(|c| matches!(c, Call::CreateRule { .. }))
            .count(),
        2
    );
}

#[test]
fn a_target_someone_else_made_is_used_and_ipv6_doubles_the_rules() {
    let mut w = bare();
    w.targets = vec![Target {
        id: "tmt-theirs".into(),
        eni: Some("eni-sensor".into()),
        nlb: None,
        gwlbe: None,
    }];
    let mut s = spec();
    s.ipv6 = true;
    let p = plan(&s, &w, Action::Apply).unwrap();
    assert!(
        !p.calls
            .iter()
            .any(|c| matches!(c, Call::CreateTarget { .. }))
    );
    let rules: Vec<_> = p
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::CreateRule { rule, .. } => Some(rule),
            _ => None,
        })
        .collect();
    assert_eq!(rules.len(), 8);
    assert!(rules.iter().any(|r| r.src_cidr == "::/0"));
    assert!(
        shown(&p)
            .iter()
            .any(|l| l.contains("--traffic-mirror-target-id tmt-theirs"))
    );
}
