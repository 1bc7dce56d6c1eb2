use super::*;
use crate::model::{Endpoint, Protocol, QueryRecord, SummaryRecord, Timestamp};
use std::time::Duration;

fn query(n: u64) -> Record {
    Record::Query(QueryRecord {
        ts: Timestamp(n),
        endpoint: Endpoint::from_text("10.0.1.5:40000", "10.0.3.17:5432", None, Protocol::Postgres),
        user: Some("app".into()),
        database: Some("orders".into()),
        verb: "SELECT".into(),
        fingerprint: format!("SELECT ? FROM t{n}"),
        query: None,
        rows: Some(1),
        error_code: None,
        error_name: None,
        error_message: None,
        bytes_request: 10,
        bytes_response: 20,
        latency_first_byte_us: Some(5),
        latency_us: 7,
        prepared: false,
        tag: None,
    })
}

fn summary(n: u64) -> Record {
    Record::Summary(SummaryRecord {
        ts: Timestamp(n),
        ..SummaryRecord::default()
    })
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rds-sensor-file-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Every line of a file, parsed; panics on a line that is not one whole JSON object.
fn lines(p: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{}: a cut line",
        p.display()
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", p.display())))
        .collect()
}

#[test]
fn each_file_takes_its_kinds() {
    let d = tmp("kinds");
    let specs = [
        FileSpec::parse(&format!("query={}", d.join("q.json").display())).unwrap(),
        FileSpec::parse(&d.join("all.json").display().to_string()).unwrap(),
    ];
    let mut f = Files::open(&specs, Rotation::default()).unwrap();
    for n in 0..10 {
        f.emit(&query(n)).unwrap();
        f.emit(&summary(n)).unwrap();
    }
    f.flush().unwrap();
    let q = lines(&d.join("q.json"));
    assert_eq!(q.len(), 10);
    assert!(q.iter().all(|v| v["kind"] == "query"));
    let all = lines(&d.join("all.json"));
    assert_eq!(all.len(), 20);
    assert_eq!(f.stats()[0].1.lines, 10);
    drop(f);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_kind_that_does_not_exist_is_an_error_naming_the_kinds() {
    let e = FileSpec::parse("queries,login=/tmp/x.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`queries`") && e.contains("tls_exchange"), "{e}");
    assert!(FileSpec::parse("query=").is_err());
    let ok = FileSpec::parse("login, finding=/var/log/x.json").unwrap();
    assert_eq!(ok.kinds, ["login", "finding"]);
}

#[test]
fn size_rotation_keeps_whole_lines_and_the_newest_files() {
    let d = tmp("size");
    let p = d.join("r.json");
    let rotation = Rotation {
        max_bytes: 4096,
        max_age: None,
        keep: 2,
    };
    let mut f = Files::open(
        &[FileSpec::parse(&p.display().to_string()).unwrap()],
        rotation,
    )
    .unwrap();
    let n = 200;
    for i in 0..n {
        f.emit(&query(i)).unwrap();
        if i % 7 == 0 {
            f.flush().unwrap();
        }
    }
    f.flush().unwrap();
    let st = f.stats()[0].1;
    assert!(st.rotations >= 3, "{st:?}");
    assert_eq!(st.lines, n);
    assert_eq!(st.lost, 0);
    let numbered = |i: u32| PathBuf::from(format!("{}.{i}", p.display()));
    assert!(!numbered(3).exists(), "only `keep` old files");
    // Oldest to newest: PATH.2, PATH.1, PATH; the lines run on without a gap or a repeat.
    let mut seq = Vec::new();
    for file in [numbered(2), numbered(1), p.clone()] {
        assert!(std::fs::metadata(&file).unwrap().len() <= rotation.max_bytes);
        seq.extend(
            lines(&file)
                .iter()
                .map(|v| v["fingerprint"].as_str().unwrap().to_string()),
        );
    }
    let first: u64 = seq[0]
        .trim_start_matches("SELECT ? FROM t")
        .parse()
        .unwrap();
    let want: Vec<String> = (first..n).map(|i| format!("SELECT ? FROM t{i}")).collect();
    assert_eq!(seq, want);
    drop(f);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn age_rotation_and_a_file_moved_away_are_followed() {
    let d = tmp("age");
    let p = d.join("r.json");
    let rotation = Rotation {
        max_bytes: 0,
        max_age: Some(Duration::from_millis(50)),
        keep: 3,
    };
    let mut f = Files::open(
        &[FileSpec::parse(&p.display().to_string()).unwrap()],
        rotation,
    )
    .unwrap();
    f.emit(&query(1)).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(60));
    f.flush().unwrap();
    assert_eq!(lines(&PathBuf::from(format!("{}.1", p.display()))).len(), 1);
    // An empty file is not rotated for its age.
    std::thread::sleep(Duration::from_millis(60));
    f.flush().unwrap();
    assert!(!PathBuf::from(format!("{}.2", p.display())).exists());
    drop(f);
    // logrotate's way: the file is renamed; the next tick opens PATH anew.
    let mut f = Files::open(
        &[FileSpec::parse(&p.display().to_string()).unwrap()],
        Rotation {
            max_age: None,
            ..rotation
        },
    )
    .unwrap();
    f.emit(&query(2)).unwrap();
    f.flush().unwrap();
    std::fs::rename(&p, d.join("moved.json")).unwrap();
    f.flush().unwrap();
    f.emit(&query(3)).unwrap();
    f.flush().unwrap();
    assert_eq!(lines(&d.join("moved.json")).len(), 1);
    assert_eq!(lines(&p)[0]["fingerprint"], "SELECT ? FROM t3");
    drop(f);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn lines_that_cannot_be_written_are_counted() {
    // /dev/full takes the open and refuses every write (ENOSPC).
    let mut f = Files::open(
        &[FileSpec::parse("/dev/full").unwrap()],
        Rotation {
            max_bytes: 0,
            ..Rotation::default()
        },
    )
    .unwrap();
    for i in 0..5 {
        f.emit(&query(i)).unwrap();
    }
    f.flush().unwrap();
    let st = f.stats()[0].1;
    assert_eq!((st.lines, st.lost), (0, 5), "{st:?}");
}

#[test]
fn a_path_that_cannot_be_opened_is_an_error_at_start() {
    let e = Files::open(
        &[FileSpec::parse("/proc/version/records.json").unwrap()],
        Rotation::default(),
    )
    .err()
    .expect("an error")
    .to_string();
    assert!(e.contains("/proc/version/records.json"), "{e}");
}
