//! Invalid configurations, bad arguments and malformed or missing messages give typed errors.

use mesh::error::{Endpoint, MeshError, MessageError};
use mesh::memory::{mesh, run_parties, run_with_client};
use mesh::transport::{ClientLink, Transport};
use mesh::{Client, Party, PartyId, Share, Threshold};
use std::time::Duration;

/// The party users know as party 1 (index 0): errors name it by that number.
fn party1() -> Endpoint {
    Endpoint::Party(PartyId::from_number(1).unwrap())
}

#[test]
fn invalid_thresholds() {
    assert_eq!(
        Threshold::new(2, 1),
        Err(MeshError::InvalidThreshold { n: 2, t: 1 })
    );
    assert_eq!(
        Threshold::new(3, 0),
        Err(MeshError::InvalidThreshold { n: 3, t: 0 })
    );
    assert_eq!(
        Threshold::new(4, 2),
        Err(MeshError::InvalidThreshold { n: 4, t: 2 })
    );
    assert!(matches!(
        Threshold::new(65, 1),
        Err(MeshError::TooManyParties { .. })
    ));
    assert!(Threshold::new(9, 4).is_ok());
    assert!(matches!(
        run_parties(4, 2, 0, |_| ()),
        Err(MeshError::InvalidThreshold { n: 4, t: 2 })
    ));
}

#[test]
fn party_indices_are_checked() {
    let th = Threshold::new(3, 1).unwrap();
    let (mut trs, _) = mesh(3);
    let tr = trs.remove(2);
    assert_eq!(
        Party::new(th, 3, tr, [0; 32]).err(),
        Some(MeshError::PartyOutOfRange { index: 3, n: 3 })
    );
    assert_eq!(th.lagrange(&[0, 0]), Err(MeshError::DuplicateParty(0)));
    assert_eq!(
        th.lagrange(&[0, 7]),
        Err(MeshError::PartyOutOfRange { index: 7, n: 3 })
    );
    let th5 = Threshold::new(5, 1).unwrap();
    let (trs, _) = mesh(5);
    let mut p = Party::new(th5, 0, trs.into_iter().next().unwrap(), [0; 32]).unwrap();
    assert_eq!(p.set_active(&[0, 1, 1]), Err(MeshError::DuplicateParty(1)));
    assert_eq!(
        p.set_active(&[0, 1, 5]),
        Err(MeshError::PartyOutOfRange { index: 5, n: 5 })
    );
    assert_eq!(
        p.set_active(&[0, 1]),
        Err(MeshError::PartySetSize { got: 2, need: 3 })
    );
    assert!(p.set_active(&[4, 0, 2]).is_ok());
    assert_eq!(p.active(), &[0, 2, 4]);
}

#[test]
fn bad_arguments() {
    let res = run_parties(3, 1, 1, |p| {
        let a: Vec<Share> = (0..3).map(Share::public).collect();
        let b: Vec<Share> = (0..2).map(Share::public).collect();
        let mut errs = vec![
            p.mul(&a, &b).err(),
            p.mul_trunc(&a, &b, 16).err(),
            p.dot_trunc(&a, &b, 16).err(),
            p.trunc(&a, 0).err(),
            p.trunc(&a, 80).err(),
            p.softmax(&a, 0).err(),
            p.max(&a, 2).err(),
            p.rmsnorm(&a, &b, 3, 1e-5).err(),
            p.mul_trunc_many(&[(&a, &b, 16)]).err(),
        ];
        // Nothing was sent: the parties are still in step and can go on.
        let ok = p.mul(&a, &a).map(|v| v.len());
        errs.push(ok.err());
        errs
    })
    .unwrap();
    for errs in res {
        assert!(
            matches!(errs[0], Some(MeshError::LengthMismatch { .. })),
            "{errs:?}"
        );
        assert!(matches!(errs[1], Some(MeshError::LengthMismatch { .. })));
        assert!(matches!(errs[2], Some(MeshError::LengthMismatch { .. })));
        assert!(matches!(errs[3], Some(MeshError::InvalidArgument(_))));
        assert!(matches!(errs[4], Some(MeshError::InvalidArgument(_))));
        assert!(matches!(errs[5], Some(MeshError::InvalidArgument(_))));
        assert!(matches!(errs[6], Some(MeshError::InvalidArgument(_))));
        assert!(matches!(errs[7], Some(MeshError::LengthMismatch { .. })));
        assert!(matches!(errs[8], Some(MeshError::LengthMismatch { .. })));
        assert_eq!(errs[9], None);
    }
}

/// The parties at indices 1 and 2 run a multiplication; party 1 (index 0) is replaced by raw
/// bytes.
fn with_rogue_party0(msg: Option<Vec<u8>>, timeout: Option<Duration>) -> Vec<MeshError> {
    let th = Threshold::new(3, 1).unwrap();
    let (mut trs, _link) = mesh(3);
    let mut rogue = trs.remove(0);
    std::thread::scope(|s| {
        let hs: Vec<_> = trs
            .into_iter()
            .enumerate()
            .map(|(i, mut tr)| {
                if let Some(d) = timeout {
                    tr.set_timeout(d);
                }
                s.spawn(move || {
                    let mut p = Party::new(th, i + 1, tr, [i as u8; 32]).unwrap();
                    let x: Vec<Share> = (0..2).map(Share::public).collect();
                    p.mul(&x, &x).unwrap_err()
                })
            })
            .collect();
        match msg {
            Some(m) => {
                rogue.send_raw(1, m.clone()).unwrap();
                rogue.send_raw(2, m).unwrap();
                let errs = hs.into_iter().map(|h| h.join().unwrap()).collect();
                drop(rogue);
                errs
            }
            None => {
                drop(rogue);
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            }
        }
    })
}

fn header(version: u8, round: u32, count: u32) -> Vec<u8> {
    let mut v = vec![version];
    v.extend(round.to_le_bytes());
    v.extend(count.to_le_bytes());
    v
}

#[test]
fn malformed_peer_messages() {
    let good_elems = |k: usize| vec![0u8; 16 * k];
    let cases: Vec<(Vec<u8>, MessageError)> = vec![
        (vec![1, 0, 0], MessageError::Short(3)),
        (
            [header(9, 0, 2), good_elems(2)].concat(),
            MessageError::Version(9),
        ),
        (
            [header(1, 5, 2), good_elems(2)].concat(),
            MessageError::Sequence {
                expected: 0,
                got: 5,
            },
        ),
        (
            [header(1, 0, 3), good_elems(3)].concat(),
            MessageError::Count {
                expected: 2,
                got: 3,
            },
        ),
        (
            [header(1, 0, 2), good_elems(1)].concat(),
            MessageError::Length {
                expected: 41,
                got: 25,
            },
        ),
        (
            [header(1, 0, 2), vec![0xff; 32]].concat(),
            MessageError::NonCanonical(0),
        ),
    ];
    for (msg, want) in cases {
        for err in with_rogue_party0(Some(msg), None) {
            assert_eq!(
                err,
                MeshError::Malformed {
                    from: party1(),
                    error: want.clone()
                }
            );
            assert!(
                err.to_string()
                    .starts_with("malformed message from party 1: "),
                "{err}"
            );
        }
    }
}

#[test]
fn missing_peers_are_errors() {
    for err in with_rogue_party0(None, None) {
        assert_eq!(err, MeshError::Disconnected(party1()));
        assert_eq!(err.to_string(), "link to party 1 is closed");
    }
    // A silent peer that stays connected: a timeout.
    let th = Threshold::new(3, 1).unwrap();
    let (mut trs, _link) = mesh(3);
    let _silent = trs.remove(0);
    let mut tr = trs.remove(0);
    tr.set_timeout(Duration::from_millis(50));
    let mut p = Party::new(th, 1, tr, [1; 32]).unwrap();
    let x = vec![Share::public(1)];
    let err = p.mul(&x, &x).unwrap_err();
    assert_eq!(err, MeshError::Timeout(party1()));
    assert_eq!(err.to_string(), "timed out waiting for party 1");
}

#[test]
fn malformed_client_traffic() {
    // Garbage from the client to a party.
    let th = Threshold::new(3, 1).unwrap();
    let (mut trs, mut link) = mesh(3);
    link.send_to_party(0, vec![1, 2]).unwrap();
    let mut p = Party::new(th, 0, trs.remove(0), [0; 32]).unwrap();
    assert_eq!(
        p.input_from_client(1).unwrap_err(),
        MeshError::Malformed {
            from: Endpoint::Client,
            error: MessageError::Short(2)
        }
    );
    // Garbage from a party to the client.
    let (mut trs, link) = mesh(3);
    let mut c = Client::new(th, link, [0; 32]).unwrap();
    trs[0].send_to_client(vec![7; 20]).unwrap();
    assert!(matches!(
        c.reconstruct(1),
        Err(MeshError::Malformed {
            from,
            error: MessageError::Version(7)
        }) if from == party1()
    ));
}

#[test]
fn client_detects_inconsistent_shares() {
    for (n, t) in [(3, 1), (4, 1), (5, 2)] {
        let (res, _) = run_with_client(
            n,
            t,
            3,
            |c| {
                c.share_input(&[5, 6]).unwrap();
                c.reconstruct(2)
            },
            |p| {
                let x = p.input_from_client(2)?;
                // The last party corrupts its share of the second output.
                let y = if p.index() == n - 1 {
                    vec![x[0].clone(), x[1].add_public(1)]
                } else {
                    x
                };
                p.open_to_client(&y)
            },
        )
        .unwrap();
        assert_eq!(
            res,
            Err(MeshError::Inconsistent {
                element: 1,
                party: n - 1
            })
        );
    }
}
