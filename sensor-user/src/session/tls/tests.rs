//! The layer on a TLS 1.3 session built here (AES-128-GCM, record protection checked against
//! RFC 8448 in `cipher.rs`): the epochs, a KeyUpdate, keys that come late.

use super::cipher::{Suite, seal13, tls13_next_secret};
use super::keys::{KeyStore, Secret};
use super::layer::{Hold, TlsLayer};
use crate::decode::Dir;
use crate::model::DecoderStats;
use crate::session::{Layer, Piece};

fn record(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![typ, 3, 3, (body.len() >> 8) as u8, body.len() as u8];
    r.extend_from_slice(body);
    r
}

fn handshake(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![typ, 0, (body.len() >> 8) as u8, body.len() as u8];
    m.extend_from_slice(body);
    m
}

fn client_hello() -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[1; 32]);
    b.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    let ext = [0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04];
    b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    b.extend_from_slice(&ext);
    record(22, &handshake(1, &b))
}

fn server_hello() -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[2; 32]);
    b.extend_from_slice(&[0, 0x13, 0x01, 0]);
    let ext = [0x00, 0x2b, 0x00, 0x02, 0x03, 0x04];
    b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    b.extend_from_slice(&ext);
    record(22, &handshake(2, &b))
}

fn secret(byte: u8) -> Secret {
    Secret::new(vec![byte; 32])
}

fn keylog() -> String {
    let cr = "01".repeat(32);
    [
        ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", 3),
        ("SERVER_HANDSHAKE_TRAFFIC_SECRET", 4),
        ("CLIENT_TRAFFIC_SECRET_0", 5),
        ("SERVER_TRAFFIC_SECRET_0", 6),
    ]
    .iter()
    .map(|(l, b)| format!("{l} {cr} {}\n", format!("{b:02x}").repeat(32)))
    .collect()
}

/// Pieces of plaintext in the order the session would take them.
fn drain(layer: &mut TlsLayer, stats: &mut DecoderStats) -> Vec<(Dir, String)> {
    let mut out = Vec::new();
    loop {
        let a = layer.next_ts(Dir::Request, stats);
        let b = layer.next_ts(Dir::Response, stats);
        let dir = match (a, b) {
            (None, None) => return out,
            (Some(x), Some(y)) if y < x => Dir::Response,
            (Some(_), _) => Dir::Request,
            (None, Some(_)) => Dir::Response,
        };
        let mut buf = Vec::new();
        match layer.next(dir, &mut buf, stats) {
            Some(Piece::Data { .. }) => out.push((dir, String::from_utf8_lossy(&buf).into())),
            Some(Piece::Gap { .. }) => out.push((dir, "<gap>".into())),
            Some(Piece::Left { .. }) => unreachable!("the TLS layer never sees the wire leave"),
            Some(Piece::Opaque) => {
                out.push((dir, "<opaque>".into()));
                return out;
            }
            None => return out,
        }
    }
}

/// The whole conversation, wire bytes per step: hellos, the encrypted Finished each way,
/// data, a client KeyUpdate, data under the next client key.
fn conversation() -> Vec<(Dir, u64, Vec<u8>)> {
    let suite = Suite::from_id(0x1301);
    let (chs, shs, cap, sap) = (secret(3), secret(4), secret(5), secret(6));
    let cap1 = tls13_next_secret(&suite, &cap);
    let fin = handshake(20, &[0; 32]);
    let key_update = handshake(24, &[0]);
    vec![
        (Dir::Request, 1, client_hello()),
        (Dir::Response, 2, server_hello()),
        (Dir::Response, 2, seal13(&shs, 0, 22, &fin)),
        (Dir::Request, 3, seal13(&chs, 0, 22, &fin)),
        (Dir::Request, 4, seal13(&cap, 0, 23, b"query one")),
        (Dir::Response, 5, seal13(&sap, 0, 23, b"answer one")),
        (Dir::Request, 6, seal13(&cap, 1, 22, &key_update)),
        (Dir::Request, 7, seal13(&cap1, 0, 23, b"query two")),
        (Dir::Response, 8, seal13(&sap, 1, 23, b"answer two")),
    ]
}

fn run(store: &KeyStore, keys_after: Option<usize>) -> Vec<(Dir, String)> {
    let mut layer = TlsLayer::new(store.clone(), Hold::default(), Default::default());
    let mut stats = DecoderStats::default();
    let mut got = Vec::new();
    for (i, (dir, ts, bytes)) in conversation().into_iter().enumerate() {
        if keys_after == Some(i) {
            store.add_text(&keylog());
        }
        // Byte by byte: records straddle every push.
        for b in bytes.chunks(1) {
            layer.push(dir, ts, b);
        }
        got.extend(drain(&mut layer, &mut stats));
    }
    got
}

fn want() -> Vec<(Dir, String)> {
    vec![
        (Dir::Request, "query one".into()),
        (Dir::Response, "answer one".into()),
        (Dir::Request, "query two".into()),
        (Dir::Response, "answer two".into()),
    ]
}

#[test]
fn epochs_and_a_key_update_read_through() {
    let store = KeyStore::new(10, None);
    store.add_text(&keylog());
    assert_eq!(run(&store, None), want());
}

#[test]
fn keys_that_come_late_read_the_held_records_in_wire_order() {
    // The keys arrive only before the last record: everything before was held.
    let store = KeyStore::new(10, None);
    assert_eq!(run(&store, Some(8)), want());
}

#[test]
fn a_lost_key_update_gives_the_session_up_as_bad_key_not_a_hang() {
    let store = KeyStore::new(10, None);
    store.add_text(&keylog());
    let mut layer = TlsLayer::new(store.clone(), Hold::default(), Default::default());
    let mut stats = DecoderStats::default();
    let mut got = Vec::new();
    for (i, (dir, ts, bytes)) in conversation().into_iter().enumerate() {
        if i == 6 {
            // The KeyUpdate's record is lost with its segment.
            layer.gap(dir, ts, crate::decode::Gap::Exact(bytes.len() as u64));
        } else {
            layer.push(dir, ts, &bytes);
        }
        got.extend(drain(&mut layer, &mut stats));
    }
    // Before the loss: read. After: the client's records no longer open under any key the
    // layer can derive; it says so (a gap, then the session unreadable), never a wrong
    // plaintext.
    assert_eq!(&got[..2], &want()[..2]);
    assert!(
        got[2..]
            .iter()
            .all(|(_, s)| s.starts_with('<') || s == "answer two"),
        "{got:?}"
    );
}

/// A session that goes quiet while its keys are late gives up when the wait is over, not at
/// its idle timeout: nothing is held past it, and the report says no_key.
#[test]
fn a_quiet_session_stops_waiting_when_its_wait_is_over() {
    let store = KeyStore::new(10, None);
    let hold = Hold {
        wait_ns: 1_000,
        ..Hold::default()
    };
    let mut layer = TlsLayer::new(store, hold, Default::default());
    let mut stats = DecoderStats::default();
    for (dir, ts, bytes) in conversation().into_iter().take(5) {
        layer.push(dir, ts, &bytes);
    }
    let early = drain(&mut layer, &mut stats);
    assert!(
        early.is_empty(),
        "{early:?} {:?}",
        layer.report(true, &mut stats)
    );
    let until = layer.waiting_until().expect("waiting for keys");
    layer.expire(until);
    assert!(layer.waiting_until().is_some(), "not before its end");
    layer.expire(until + 1);
    assert_eq!(layer.waiting_until(), None);
    assert_eq!(
        drain(&mut layer, &mut stats),
        [(Dir::Request, "<opaque>".to_string())]
    );
    let info = layer.report(false, &mut stats).expect("reported");
    assert_eq!(info.undecryptable, Some(crate::model::Undecryptable::NoKey));
}

/// A segment lost while the keys are late: the records around it wait with the others, and
/// once the keys come, framing is found again and the rest is read (the lost record is a gap).
#[test]
fn a_loss_while_keys_are_late_loses_only_what_was_lost() {
    let store = KeyStore::new(10, None);
    let mut layer = TlsLayer::new(store.clone(), Hold::default(), Default::default());
    let mut stats = DecoderStats::default();
    let mut got = Vec::new();
    for (i, (dir, ts, bytes)) in conversation().into_iter().enumerate() {
        match i {
            // "answer one" lost, keys not there yet.
            5 => layer.gap(dir, ts, crate::decode::Gap::Exact(bytes.len() as u64)),
            8 => {
                store.add_text(&keylog());
                layer.push(dir, ts, &bytes);
            }
            _ => layer.push(dir, ts, &bytes),
        }
        got.extend(drain(&mut layer, &mut stats));
    }
    assert_eq!(
        got,
        [
            (Dir::Request, "query one".to_string()),
            (Dir::Response, "<gap>".to_string()),
            (Dir::Request, "query two".to_string()),
            (Dir::Response, "answer two".to_string()),
        ]
    );
}
