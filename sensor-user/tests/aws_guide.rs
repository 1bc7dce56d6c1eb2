//! docs/aws.md holds what AWS holds it to: the IAM policy as printed passes a policy linter
//! (Duo Labs' parliament, which knows every service's actions and the grammar: a Sid with a
//! dash, a misspelt action fail it), each filter recipe fits AWS's 10 rules per filter, and
//! the PacketLength cost it states is the one measured on the bundled captures.

mod common;

use std::path::Path;
use std::process::Command;

const PARLIAMENT: &str = "parliament==1.6.4";

fn guide() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/aws.md")).unwrap()
}

/// The fenced blocks of `lang` in the section that starts with `heading`.
fn blocks(text: &str, heading: &str, lang: &str) -> Vec<String> {
    let at = text
        .find(heading)
        .unwrap_or_else(|| panic!("no `{heading}`"));
    let end = text[at + heading.len()..]
        .find("\n## ")
        .map_or(text.len(), |e| at + heading.len() + e);
    let section = &text[at..end];
    let fence = format!("```{lang}\n");
    section
        .split(&fence)
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect()
}

fn lint(py: &Path, policy: &str) -> String {
    let script = r#"
import sys
from parliament import analyze_policy_string
p = analyze_policy_string(sys.argv[1], include_community_auditors=True)
for f in p.findings:
    print(f.issue, f.detail)
print(len(p.findings), "findings")
"#;
    let out = Command::new(py)
        .args(["-c", script, policy])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_iam_policy_passes_a_linter_as_printed() {
    let text = guide();
    let policies = blocks(&text, "## 6. IAM", "json");
    assert_eq!(policies.len(), 1, "one policy in section 6");
    let v: serde_json::Value = serde_json::from_str(&policies[0]).expect("valid JSON as printed");
    for st in v["Statement"].as_array().unwrap() {
        let sid = st["Sid"].as_str().unwrap();
        assert!(
            sid.chars().all(|c| c.is_ascii_alphanumeric()),
            "Sid `{sid}`"
        );
    }
    let py = common::venv::venv("parliament-venv", PARLIAMENT).join("bin/python");
    let said = lint(&py, &policies[0]);
    assert!(said.trim_end().ends_with("0 findings"), "{said}");
    // The linter does find what it should: a dash in a Sid, an action that does not exist.
    let broken = policies[0]
        .replace("\"Metrics\"", "\"Metrics-1\"")
        .replace("BatchImportFindings", "BatchImportFinding");
    let said = lint(&py, &broken);
    assert!(
        said.contains("INVALID_SID") && said.contains("UNKNOWN_ACTION"),
        "{said}"
    );
}

#[test]
fn the_mirror_policy_passes_a_linter_as_printed() {
    let text = guide();
    let policies = blocks(&text, "## 4. Session", "json");
    assert_eq!(
        policies.len(),
        1,
        "one policy for `aws mirror` in section 4"
    );
    let py = common::venv::venv("parliament-venv", PARLIAMENT).join("bin/python");
    let said = lint(&py, &policies[0]);
    assert!(said.trim_end().ends_with("0 findings"), "{said}");
    // Every call `aws mirror` makes is allowed by it.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sensor-cloudwatch/src/mirror");
    let mut code = String::new();
    for f in ["observe.rs", "apply.rs"] {
        code += &std::fs::read_to_string(src.join(f)).unwrap();
    }
    // Each SDK operation the code calls (`.create_traffic_mirror_session()`, …), as its IAM
    // action (`ec2:CreateTrafficMirrorSession`).
    let mut calls = std::collections::BTreeSet::new();
    for piece in code.split('.').skip(1) {
        let word: String = piece
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        let verb = word.split('_').next().unwrap_or_default();
        if ["describe", "create", "modify", "delete"].contains(&verb)
            && piece[word.len()..].starts_with("()")
        {
            calls.insert(word);
        }
    }
    assert!(calls.len() >= 12, "{calls:?}");
    for call in &calls {
        let mut action: String = call
            .split('_')
            .map(|w| w[..1].to_uppercase() + &w[1..])
            .collect();
        action = action.replace("DbInstances", "DBInstances");
        let service = if call == "describe_db_instances" {
            "rds"
        } else {
            "ec2"
        };
        assert!(
            policies[0].contains(&format!("\"{service}:{action}\"")),
            "`aws mirror` calls {call}, and the policy lacks {service}:{action}"
        );
    }
}

#[test]
fn each_filter_recipe_fits_ten_rules() {
    let text = guide();
    let rules: usize = blocks(&text, "## 3. Filter", "sh")
        .iter()
        .map(|b| b.matches("create-traffic-mirror-filter-rule").count())
        .sum();
    // One filter per port: IPv4 and IPv6, both directions.
    assert_eq!(rules, 4, "the recipe's rules");
    assert!(rules <= 10, "AWS allows 10 rules per filter");
    assert!(text.contains("at most 10 rules"));
}

/// The cost of PacketLength the guide states: queries the sensor still reports on the capture
/// cut as PacketLength 128 cuts it, of those on the whole capture.
#[test]
fn the_packet_length_cost_is_the_measured_one() {
    let count = |name: &str| {
        let out = common::analyze_debug(&common::pcaps_dir().join(name), &["--json"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("\"kind\":\"query\""))
            .count()
    };
    let (full, cut) = (count("pg-queries.pcap"), count("pg-queries-trunc128.pcap"));
    assert!(cut < full && full > 10, "{cut} of {full}");
    let said = format!("**{cut} of {full} queries**");
    assert!(guide().contains(&said), "docs/aws.md should say {said}");
}

const CFN_LINT: &str = "cfn-lint==1.58.0";

/// docs/cloudformation/rds-sensor-mirror.yaml, the guide's recipe as a stack, passes AWS's own
/// template linter (which also knows each resource's schema), and a broken copy does not.
#[test]
fn the_cloudformation_template_passes_cfn_lint() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cloudformation");
    let template = dir.join("rds-sensor-mirror.yaml");
    let text = std::fs::read_to_string(&template).unwrap();
    let rules = text
        .matches("Type: AWS::EC2::TrafficMirrorFilterRule")
        .count();
    assert!((1..=10).contains(&rules), "{rules} rules in one filter");
    let bin = common::venv::venv("cfn-lint-venv", CFN_LINT).join("bin/cfn-lint");
    let out = Command::new(&bin).arg(&template).output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let broken =
        std::env::temp_dir().join(format!("rds-sensor-broken-{}.yaml", std::process::id()));
    std::fs::write(
        &broken,
        text.replacen("TrafficDirection: ingress", "TrafficDirection: inbound", 1),
    )
    .unwrap();
    let out = Command::new(&bin).arg(&broken).output().unwrap();
    let _ = std::fs::remove_file(&broken);
    assert!(
        !out.status.success(),
        "cfn-lint took a direction that does not exist"
    );
}
