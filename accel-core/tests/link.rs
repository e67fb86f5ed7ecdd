//! Fabric links: the in-process virtual switch with its fault injection,
//! and RoCE v2 over UDP on 127.0.0.0/8.

use accel_core::fabric::link::{
    Faults, Gid, Link, LinkError, LinkStats, MAX_FRAME_LEN, RX_QUEUE_FRAMES, Received, UdpLink, VirtualSwitch,
    gid_from_ipv4, gid_to_ipv4,
};
use accel_core::roce::packet::{Aeth, Opcode, Packet, PacketError, ROCE_V2_UDP_PORT, Reth};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const IP_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const WAIT: Duration = Duration::from_secs(2);

fn ports(sw: &Arc<VirtualSwitch>) -> (Arc<dyn Link>, Arc<dyn Link>) {
    (sw.attach(gid_from_ipv4(IP_A)).unwrap(), sw.attach(gid_from_ipv4(IP_B)).unwrap())
}

/// A SEND Only packet whose PSN tells frames apart.
fn packet(psn: u32) -> Packet {
    Packet::builder(Opcode::SendOnly, 0x11, psn).payload(psn.to_be_bytes().repeat(3)).build().unwrap()
}

/// The frame `from` sends to `to`: ICRC over the pseudo headers of both GIDs.
fn frame(from: &dyn Link, to: &dyn Link, psn: u32) -> Vec<u8> {
    let src = gid_to_ipv4(&from.gid()).unwrap();
    let dst = gid_to_ipv4(&to.gid()).unwrap();
    packet(psn).encode_for(src, dst, from.src_port())
}

/// Decodes a received frame the way a receiving engine does.
fn decode(rx: &Received, at: &dyn Link) -> Result<Packet, PacketError> {
    let src = gid_to_ipv4(&rx.src).unwrap();
    Packet::decode_from(src, gid_to_ipv4(&at.gid()).unwrap(), rx.src_port, &rx.frame)
}

/// Receives exactly `n` frames (each within `WAIT`), then checks nothing else
/// is queued.
fn drain(port: &dyn Link, n: u64) -> Vec<Received> {
    let got: Vec<Received> = (0..n).map(|i| port.recv(WAIT).unwrap().unwrap_or_else(|| panic!("frame {i}"))).collect();
    assert_eq!(port.recv(Duration::ZERO).unwrap(), None);
    got
}

/// PSN of each received frame (which must decode).
fn psns(got: &[Received], at: &dyn Link) -> Vec<u32> {
    got.iter().map(|r| decode(r, at).unwrap().bth().psn).collect()
}

/// PSN of each frame `run` received (a -> b, which must decode).
fn ab_psns(frames: &[Vec<u8>]) -> Vec<u32> {
    frames.iter().map(|f| Packet::decode_from(IP_A, IP_B, ROCE_V2_UDP_PORT, f).unwrap().bth().psn).collect()
}

/// Frames the switch put in receive queues, from the sender's counters.
fn delivered(s: &LinkStats) -> u64 {
    s.sent - s.dropped + s.duplicated
}

#[test]
fn switch_delivers_between_ports() {
    let sw = VirtualSwitch::new(Faults::none());
    let (a, b) = ports(&sw);
    assert_eq!(a.gid(), gid_from_ipv4(IP_A));
    assert_eq!(a.src_port(), ROCE_V2_UDP_PORT);
    let f = frame(&*a, &*b, 7);
    a.send(&b.gid(), f.clone()).unwrap();
    let rx = b.recv(WAIT).unwrap().unwrap();
    assert_eq!(rx, Received { src: a.gid(), src_port: ROCE_V2_UDP_PORT, frame: f, ip_id: 0 });
    assert_eq!(decode(&rx, &*b), Ok(packet(7)));
    // And back, in order.
    for psn in 0..10 {
        b.send(&a.gid(), frame(&*b, &*a, psn)).unwrap();
    }
    assert_eq!(psns(&drain(&*a, 10), &*a), (0..10).collect::<Vec<_>>());
    assert_eq!(a.stats(), LinkStats { sent: 1, received: 10, ..Default::default() });
    assert_eq!(b.stats(), LinkStats { sent: 10, received: 1, ..Default::default() });
    assert_eq!(sw.stats(), LinkStats { sent: 11, received: 11, ..Default::default() });
    // Arbitrary bytes travel too: the switch does not parse frames.
    a.send(&a.gid(), vec![]).unwrap();
    a.send(&a.gid(), vec![0xAB; MAX_FRAME_LEN]).unwrap();
    assert_eq!(a.recv(WAIT).unwrap().unwrap().frame, Vec::<u8>::new());
    assert_eq!(a.recv(WAIT).unwrap().unwrap().frame.len(), MAX_FRAME_LEN);
}

#[test]
fn switch_recv_times_out_and_wakes_up() {
    let sw = VirtualSwitch::new(Faults::none());
    let (a, b) = ports(&sw);
    let t = Instant::now();
    assert_eq!(b.recv(Duration::from_millis(20)).unwrap(), None);
    assert!(t.elapsed() >= Duration::from_millis(20));
    assert_eq!(b.recv(Duration::ZERO).unwrap(), None);
    // A receiver blocked in recv wakes up for a frame from another thread.
    let dst = b.gid();
    let f = frame(&*a, &*b, 1);
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        a.send(&dst, f).unwrap();
    });
    let t = Instant::now();
    assert!(b.recv(WAIT).unwrap().is_some());
    assert!(t.elapsed() < Duration::from_millis(400));
    sender.join().unwrap();
}

#[test]
fn switch_errors() {
    let sw = VirtualSwitch::new(Faults::none());
    let (a, b) = ports(&sw);
    // Attach twice.
    assert_eq!(sw.attach(a.gid()).err(), Some(LinkError::GidInUse));
    // Unknown destination: an error, counted as dropped, not as sent.
    let nowhere: Gid = gid_from_ipv4(Ipv4Addr::new(10, 9, 9, 9));
    assert_eq!(a.send(&nowhere, vec![0; 16]), Err(LinkError::UnknownDestination));
    assert_eq!(a.stats(), LinkStats { dropped: 1, ..Default::default() });
    // Too large.
    assert_eq!(a.send(&b.gid(), vec![0; MAX_FRAME_LEN + 1]), Err(LinkError::TooLarge));
    // Dropping a port detaches it; its GID can be attached again.
    let gid_b = b.gid();
    drop(b);
    assert_eq!(a.send(&gid_b, vec![0; 16]), Err(LinkError::UnknownDestination));
    let b = sw.attach(gid_b).unwrap();
    a.send(&gid_b, vec![1; 16]).unwrap();
    assert_eq!(b.recv(WAIT).unwrap().unwrap().frame, vec![1; 16]);
    assert_eq!(a.stats().dropped, 2);
}

#[test]
fn switch_queue_overflow_counts_drops() {
    let sw = VirtualSwitch::new(Faults::none());
    let a = sw.attach(gid_from_ipv4(IP_A)).unwrap();
    let b = sw.attach_with_capacity(gid_from_ipv4(IP_B), 8).unwrap();
    for psn in 0..20 {
        a.send(&b.gid(), frame(&*a, &*b, psn)).unwrap();
    }
    assert_eq!(a.stats(), LinkStats { sent: 20, dropped: 12, ..Default::default() });
    // The first eight made it, in order; the rest were dropped.
    assert_eq!(psns(&drain(&*b, 8), &*b), (0..8).collect::<Vec<_>>());
    // Room again.
    a.send(&b.gid(), frame(&*a, &*b, 99)).unwrap();
    assert_eq!(psns(&drain(&*b, 1), &*b), [99]);

    // The default queue holds RX_QUEUE_FRAMES frames.
    let c = sw.attach(gid_from_ipv4(Ipv4Addr::new(10, 0, 0, 3))).unwrap();
    let n = RX_QUEUE_FRAMES as u64 + 3;
    for _ in 0..n {
        a.send(&c.gid(), Vec::new()).unwrap();
    }
    assert_eq!(a.stats().dropped, 12 + 3);
    assert_eq!(c.stats(), LinkStats::default());
}

/// Sends `n` frames a -> b through a switch with `faults`, then receives
/// everything the counters say was delivered.
fn run(faults: Faults, n: u32) -> (Vec<Vec<u8>>, LinkStats) {
    let sw = VirtualSwitch::with_reorder_release(faults, Duration::from_millis(20));
    let (a, b) = ports(&sw);
    for psn in 0..n {
        a.send(&b.gid(), frame(&*a, &*b, psn)).unwrap();
    }
    let stats = a.stats();
    let got = drain(&*b, delivered(&stats));
    assert_eq!(b.stats().received, delivered(&stats));
    (got.into_iter().map(|r| r.frame).collect(), stats)
}

#[test]
fn switch_faults_are_deterministic() {
    let faults = |seed| Faults { seed, loss: 0.1, reorder: 0.1, duplicate: 0.1, corrupt: 0.1, ..Faults::none() };
    let (frames, stats) = run(faults(7), 300);
    assert_eq!(run(faults(7), 300), (frames.clone(), stats));
    for s in [stats.dropped, stats.duplicated, stats.corrupted, stats.reordered] {
        assert!((10..60).contains(&s), "{stats:?}");
    }
    let (other, other_stats) = run(faults(8), 300);
    assert_ne!(other, frames);
    assert_ne!(other_stats, stats);
    // The fate of each frame depends on the seed and its position only.
    let (lossless, _) = run(Faults { loss: 0.0, ..faults(7) }, 300);
    assert!(lossless.len() > frames.len());
}

#[test]
fn switch_loss() {
    let (got, stats) = run(Faults { seed: 1, loss: 0.5, ..Faults::none() }, 400);
    assert!((140..260).contains(&stats.dropped), "{stats:?}");
    assert_eq!(got.len() as u64, 400 - stats.dropped);
    assert_eq!(LinkStats { sent: 400, dropped: stats.dropped, ..Default::default() }, stats);
    // What arrives is intact and in order.
    let order = ab_psns(&got);
    assert!(order.windows(2).all(|w| w[0] < w[1]));
    let (got, stats) = run(Faults { seed: 1, loss: 1.0, ..Faults::none() }, 50);
    assert!(got.is_empty());
    assert_eq!(stats.dropped, 50);
}

#[test]
fn switch_duplicate() {
    let (got, stats) = run(Faults { seed: 2, duplicate: 0.5, ..Faults::none() }, 200);
    assert!((60..140).contains(&stats.duplicated), "{stats:?}");
    assert_eq!(got.len() as u64, 200 + stats.duplicated);
    let order = ab_psns(&got);
    // Every frame arrives, copies back to back.
    let mut dedup = order.clone();
    dedup.dedup();
    assert_eq!(dedup, (0..200).collect::<Vec<_>>());
    let (got, stats) = run(Faults { seed: 2, duplicate: 1.0, ..Faults::none() }, 20);
    assert_eq!((got.len(), stats.duplicated), (40, 20));
    assert!(got.chunks(2).all(|c| c[0] == c[1]));
}

#[test]
fn switch_reorder_swaps_but_loses_nothing() {
    let (got, stats) = run(Faults { seed: 3, reorder: 0.5, ..Faults::none() }, 200);
    assert!(stats.reordered > 20, "{stats:?}");
    assert_eq!(stats.dropped, 0);
    let order = ab_psns(&got);
    assert_ne!(order, (0..200).collect::<Vec<_>>());
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..200).collect::<Vec<_>>());
    // Every frame is at most one place away from where it was sent.
    assert!(order.iter().enumerate().all(|(i, &p)| (i as i64 - i64::from(p)).abs() <= 1));
    let inversions = order.windows(2).filter(|w| w[0] > w[1]).count() as u64;
    assert_eq!(inversions, stats.reordered);

    // Always: each held frame swaps with the next; the last one is released
    // by the timer (default 1 ms), so nothing is lost.
    let sw = VirtualSwitch::new(Faults { reorder: 1.0, ..Faults::none() });
    let (a, b) = ports(&sw);
    for psn in 0..5 {
        a.send(&b.gid(), frame(&*a, &*b, psn)).unwrap();
    }
    let t = Instant::now();
    assert_eq!(psns(&drain(&*b, 5), &*b), [1, 0, 3, 2, 4]);
    assert!(t.elapsed() < Duration::from_millis(300));
    assert_eq!(a.stats().reordered, 3);
}

#[test]
fn switch_corrupt_flips_one_bit_the_icrc_catches() {
    let sw = VirtualSwitch::new(Faults { seed: 4, corrupt: 1.0, ..Faults::none() });
    let (a, b) = ports(&sw);
    // Every header layout, transport-only ICRC (Packet::encode).
    let write = Packet::builder(Opcode::RdmaWriteOnlyWithImmediate, 3, 9)
        .reth(Reth { va: 0x1000, rkey: 0x77, dma_len: 5 })
        .immdt(accel_core::roce::packet::ImmDt(0xFEED))
        .payload(vec![5; 5])
        .build()
        .unwrap();
    let ack = Packet::builder(Opcode::Acknowledge, 3, 9).aeth(Aeth::ack(31, 4)).build().unwrap();
    let read = Packet::builder(Opcode::RdmaReadRequest, 3, 9).reth(Reth::default()).build().unwrap();
    let sent: Vec<Vec<u8>> = (0..60).map(|i| [&write, &ack, &read, &packet(i)][i as usize % 4].encode()).collect();
    for f in &sent {
        a.send(&b.gid(), f.clone()).unwrap();
    }
    assert_eq!(a.stats().corrupted, 60);
    for (orig, rx) in sent.iter().zip(drain(&*b, 60)) {
        let bits: u32 = orig.iter().zip(&rx.frame).map(|(x, y)| (x ^ y).count_ones()).sum();
        assert_eq!((bits, rx.frame.len()), (1, orig.len()));
        assert!(
            matches!(Packet::decode(&rx.frame), Err(PacketError::BadIcrc { .. })),
            "{:?}",
            Packet::decode(&rx.frame)
        );
        assert!(Packet::decode(orig).is_ok());
    }
    // encode_for frames too.
    a.send(&b.gid(), frame(&*a, &*b, 1)).unwrap();
    let rx = b.recv(WAIT).unwrap().unwrap();
    assert!(matches!(decode(&rx, &*b), Err(PacketError::BadIcrc { .. })));
}

#[test]
fn switch_delay_holds_frames() {
    let delay = Duration::from_millis(30);
    let sw = VirtualSwitch::new(Faults { delay, delay_prob: 1.0, ..Faults::none() });
    let (a, b) = ports(&sw);
    let t = Instant::now();
    for psn in 0..3 {
        a.send(&b.gid(), frame(&*a, &*b, psn)).unwrap();
    }
    assert_eq!(b.recv(Duration::ZERO).unwrap(), None);
    // A receiver already waiting wakes up when the frames are due.
    assert!(b.recv(WAIT).unwrap().is_some());
    assert!(t.elapsed() >= delay);
    assert_eq!(psns(&drain(&*b, 2), &*b), [1, 2]);
    assert_eq!(a.stats(), LinkStats { sent: 3, delayed: 3, ..Default::default() });

    // Half delayed: the undelayed ones overtake, nothing is lost.
    let (got, stats) = run(Faults { seed: 5, delay, delay_prob: 0.5, ..Faults::none() }, 40);
    assert!((8..32).contains(&stats.delayed), "{stats:?}");
    let order = ab_psns(&got);
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..40).collect::<Vec<_>>());
    assert_ne!(order, sorted);

    // A delayed frame whose port is gone when it is due is dropped.
    let sw = VirtualSwitch::new(Faults { delay: Duration::from_millis(5), delay_prob: 1.0, ..Faults::none() });
    let (a, b) = ports(&sw);
    let gid_b = b.gid();
    a.send(&gid_b, vec![0; 16]).unwrap();
    drop(b);
    assert_eq!(a.stats().dropped, 0, "not due yet");
    thread::sleep(Duration::from_millis(10));
    // Reading the counters fires the due timer.
    assert_eq!(a.stats(), LinkStats { sent: 1, delayed: 1, dropped: 1, ..Default::default() });
    assert_eq!(sw.stats(), a.stats());
}

#[test]
fn switch_set_faults_reseeds() {
    let sw = VirtualSwitch::new(Faults::none());
    let (a, b) = ports(&sw);
    sw.set_faults(Faults { loss: 1.0, ..Faults::none() });
    a.send(&b.gid(), vec![0; 16]).unwrap();
    sw.set_faults(Faults::none());
    a.send(&b.gid(), vec![1; 16]).unwrap();
    assert_eq!(drain(&*b, 1)[0].frame, vec![1; 16]);
    assert_eq!(sw.faults(), Faults::none());
    assert_eq!(sw.stats().dropped, 1);
}

fn udp_pair() -> (UdpLink, UdpLink) {
    let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    (UdpLink::bind(any).unwrap(), UdpLink::bind(any).unwrap())
}

#[test]
fn udp_exchanges_real_roce_v2() {
    let (a, b) = udp_pair();
    assert_ne!(a.local_addr().port(), 0);
    assert_eq!(a.gid(), gid_from_ipv4(Ipv4Addr::LOCALHOST));
    assert_eq!(a.src_port(), a.local_addr().port());
    // Both links are 127.0.0.1, the same GID: the peer map tells them apart.
    a.add_peer(b.gid(), b.local_addr());
    let write = Packet::builder(Opcode::RdmaWriteOnly, 0x42, 0x00FF_FFFF)
        .reth(Reth { va: 0xDEAD_0000, rkey: 9, dma_len: 1024 })
        .ack_req(true)
        .payload((0..1024).map(|i| i as u8).collect::<Vec<_>>())
        .build()
        .unwrap();
    let wire = write.encode_for(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, a.src_port());
    a.send(&b.gid(), wire.clone()).unwrap();
    let rx = b.recv(WAIT).unwrap().expect("datagram");
    assert_eq!((rx.src, rx.src_port), (a.gid(), a.local_addr().port()));
    assert_eq!(rx.frame, wire);
    // The receiver verifies the ICRC against the datagram's addresses.
    assert_eq!(decode(&rx, &b), Ok(write));
    assert!(matches!(
        Packet::decode_from(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, rx.src_port ^ 1, &rx.frame),
        Err(PacketError::BadIcrc { .. })
    ));
    // The reply goes to the configured peer port.
    let b = b.with_peer_port(a.local_addr().port());
    let ack = Packet::builder(Opcode::Acknowledge, 0x42, 0x00FF_FFFF).aeth(Aeth::ack(31, 1)).build().unwrap();
    b.send(&a.gid(), ack.encode_for(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, b.src_port())).unwrap();
    let rx = a.recv(WAIT).unwrap().expect("ack");
    assert_eq!(decode(&rx, &a), Ok(ack));
    assert_eq!(a.stats(), LinkStats { sent: 1, received: 1, ..Default::default() });
    assert_eq!(b.stats(), LinkStats { sent: 1, received: 1, ..Default::default() });
}

#[test]
fn udp_default_destination_port_4791() {
    // Distinct loopback addresses, so the default path (GID address, port
    // 4791) is used with no peer map. Skipped if 4791 is taken there.
    let rx_addr = SocketAddrV4::new(Ipv4Addr::new(127, 45, 91, 1), ROCE_V2_UDP_PORT);
    let b = match UdpLink::bind(rx_addr) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipping: cannot bind {rx_addr}: {e}");
            return;
        }
    };
    let a = UdpLink::bind(SocketAddrV4::new(Ipv4Addr::new(127, 45, 91, 2), 0)).unwrap();
    assert_eq!(a.resolve(&b.gid()), Some(rx_addr));
    let f = frame(&a, &b, 77);
    a.send(&b.gid(), f.clone()).unwrap();
    let rx = b.recv(WAIT).unwrap().expect("datagram");
    assert_eq!(rx.src, gid_from_ipv4(Ipv4Addr::new(127, 45, 91, 2)));
    assert_eq!(rx.frame, f);
    assert_eq!(decode(&rx, &b), Ok(packet(77)));
}

#[test]
fn udp_recv_timeout_and_errors() {
    let (a, b) = udp_pair();
    let t = Instant::now();
    assert_eq!(a.recv(Duration::from_millis(20)).unwrap(), None);
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(20) && waited < Duration::from_millis(400), "{waited:?}");
    let t = Instant::now();
    assert_eq!(a.recv(Duration::ZERO).unwrap(), None);
    assert!(t.elapsed() < Duration::from_millis(100));
    // Polling leaves the socket blocking with timeouts: a frame still arrives.
    b.add_peer(a.gid(), a.local_addr());
    b.send(&a.gid(), vec![1, 2, 3, 4]).unwrap();
    let rx = a.recv(WAIT).unwrap().unwrap();
    assert_eq!(rx.frame, [1, 2, 3, 4]);
    assert_eq!(a.recv(Duration::ZERO).unwrap(), None);

    // Not IPv4-mapped and not a peer: unknown.
    let mut gid: Gid = [0; 16];
    gid[0] = 0xFE;
    gid[1] = 0x80;
    assert_eq!(a.send(&gid, vec![0; 16]), Err(LinkError::UnknownDestination));
    assert_eq!(a.send(&b.gid(), vec![0; MAX_FRAME_LEN + 1]), Err(LinkError::TooLarge));
    assert_eq!(a.stats(), LinkStats { received: 1, dropped: 1, ..Default::default() });
    assert_eq!(b.remove_peer(&a.gid()), Some(a.local_addr()));
    assert!(matches!(UdpLink::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)), Err(LinkError::Io(_))));
}

#[test]
fn udp_link_is_a_link() {
    let (a, b) = udp_pair();
    a.add_peer(b.gid(), b.local_addr());
    let (a, b): (Arc<dyn Link>, Arc<dyn Link>) = (Arc::new(a), Arc::new(b));
    let dst = b.gid();
    let sender = thread::spawn(move || {
        for i in 0..20u8 {
            a.send(&dst, vec![i; 8]).unwrap();
        }
    });
    let got: Vec<u8> = (0..20).map(|_| b.recv(WAIT).unwrap().unwrap().frame[0]).collect();
    sender.join().unwrap();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
}

#[test]
fn udp_send_many_and_recv_many_batch() {
    let (a, b) = udp_pair();
    a.add_peer(b.gid(), b.local_addr());
    // 20 frames of different sizes (one empty, one the largest), one of
    // them too large: it alone is refused, the rest go in order.
    let mut frames: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; usize::from(i) * 100]).collect();
    frames[7] = vec![7; MAX_FRAME_LEN];
    frames[11] = vec![11; MAX_FRAME_LEN + 1];
    assert_eq!(a.send_many(&b.gid(), frames.clone()), Err(LinkError::TooLarge));
    assert_eq!(a.stats().sent, 19);
    frames.remove(11);
    // Wait for the first, then take the rest without waiting, at most 16 a call.
    let first = b.recv(WAIT).unwrap().expect("datagram");
    let mut got = vec![first];
    let deadline = Instant::now() + WAIT;
    while got.len() < frames.len() && Instant::now() < deadline {
        let before = got.len();
        let n = b.recv_many(16, &mut got).unwrap();
        assert!(n <= 16);
        assert_eq!(got.len() - before, n);
    }
    assert_eq!(got.iter().map(|r| r.frame.clone()).collect::<Vec<_>>(), frames);
    assert!(got.iter().all(|r| (r.src, r.src_port) == (a.gid(), a.local_addr().port())));
    assert_eq!(b.recv_many(16, &mut got).unwrap(), 0);
    assert_eq!(b.recv_many(0, &mut got).unwrap(), 0);
    assert_eq!(b.stats().received, 19);
    // No destination: every frame is dropped, counted.
    let mut gid: Gid = [0; 16];
    gid[0] = 0xFE;
    assert_eq!(a.send_many(&gid, vec![vec![1]; 3]), Err(LinkError::UnknownDestination));
    assert_eq!(a.stats().dropped, 3);
}

#[test]
fn switch_send_many_and_recv_many_batch() {
    let sw = VirtualSwitch::new(Faults::none());
    let (ga, gb) = (gid_from_ipv4(Ipv4Addr::new(10, 9, 0, 1)), gid_from_ipv4(Ipv4Addr::new(10, 9, 0, 2)));
    let (a, b) = (sw.attach(ga).unwrap(), sw.attach(gb).unwrap());
    a.send_many(&gb, (0..40u8).map(|i| vec![i; 20]).collect()).unwrap();
    let mut got = Vec::new();
    assert_eq!(b.recv_many(16, &mut got).unwrap(), 16);
    assert_eq!(b.recv_many(100, &mut got).unwrap(), 24);
    assert_eq!(b.recv_many(16, &mut got).unwrap(), 0);
    assert_eq!(got.iter().map(|r| r.frame[0]).collect::<Vec<_>>(), (0..40).collect::<Vec<_>>());
    // Without segmentation offload a batch buffer is cut into its frames.
    assert_eq!(a.gso_max_segments(), 1);
    let buf: Vec<u8> = (0..5u8).flat_map(|i| vec![i; if i == 4 { 7 } else { 12 }]).collect();
    a.send_segmented(&gb, &buf, 12).unwrap();
    let mut got = Vec::new();
    assert_eq!(b.recv_many(16, &mut got).unwrap(), 5);
    assert_eq!(
        got.iter().map(|r| (r.frame[0], r.frame.len())).collect::<Vec<_>>(),
        vec![(0, 12), (1, 12), (2, 12), (3, 12), (4, 7)]
    );
}

#[test]
fn udp_gso_batch_arrives_as_frames_with_their_ip_ids() {
    let (a, b) = udp_pair();
    assert!(a.gso() && b.gso(), "UDP GSO/GRO unavailable on this kernel");
    assert_eq!(a.gso_max_segments(), 64);
    a.add_peer(b.gid(), b.local_addr());
    let (ip, port) = (Ipv4Addr::LOCALHOST, a.local_addr().port());
    let packets: Vec<Packet> = (0..5u32)
        .map(|i| {
            let len = if i == 4 { 100 } else { 1024 };
            Packet::builder(Opcode::SendMiddle, 0x42, i).payload(vec![i as u8; len]).build().unwrap()
        })
        .collect();
    let frames: Vec<Vec<u8>> = packets.iter().zip(0u16..).map(|(p, id)| p.encode_for_id(ip, ip, port, id)).collect();
    a.send_segments(&b.gid(), frames.clone()).unwrap();
    assert_eq!(a.stats().sent, 5);
    let mut got = vec![b.recv(WAIT).unwrap().expect("datagram")];
    let deadline = Instant::now() + WAIT;
    while got.len() < 5 && Instant::now() < deadline {
        b.recv_many(16, &mut got).unwrap();
    }
    assert_eq!(got.iter().map(|r| r.frame.clone()).collect::<Vec<_>>(), frames);
    for (r, p) in got.iter().zip(&packets) {
        assert_eq!(Packet::decode_from_id(ip, ip, r.src_port, r.ip_id, &r.frame).as_ref(), Ok(p));
    }
    // recv_each lends the same frames; a frame recv() left in the backlog comes first.
    a.send_segments(&b.gid(), frames.clone()).unwrap();
    let first = b.recv(WAIT).unwrap().expect("datagram");
    assert_eq!((first.frame.as_slice(), first.ip_id), (frames[0].as_slice(), 0));
    let mut lent = Vec::new();
    let deadline = Instant::now() + WAIT;
    while lent.len() < 4 && Instant::now() < deadline {
        let n = b.recv_each(16, &mut |f| lent.push((f.bytes.to_vec(), f.ip_id, f.src))).unwrap();
        assert!(n <= 16);
    }
    assert_eq!(lent, frames[1..].iter().zip(1u16..).map(|(f, id)| (f.clone(), id, a.gid())).collect::<Vec<_>>());
    // The same batch laid end to end in one buffer.
    let buf = frames.concat();
    a.send_segmented(&b.gid(), &buf, frames[0].len()).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < 5 && Instant::now() < deadline {
        b.recv_many(16, &mut got).unwrap();
    }
    assert_eq!(
        got.iter().map(|r| (r.frame.clone(), r.ip_id)).collect::<Vec<_>>(),
        frames.iter().cloned().zip(0u16..).collect::<Vec<_>>()
    );
    // A batch of the wrong shape (a longer last frame) goes datagram by datagram.
    a.send_segments(&b.gid(), vec![vec![1; 64], vec![2; 80]]).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < 2 && Instant::now() < deadline {
        b.recv_many(16, &mut got).unwrap();
    }
    assert_eq!(got.iter().map(|r| (r.frame.len(), r.ip_id)).collect::<Vec<_>>(), vec![(64, 0), (80, 0)]);
}

/// Frames of `link` until `n` came or [`WAIT`] passed: (bytes, ip_id).
fn take(link: &dyn Link, n: usize) -> Vec<(Vec<u8>, u16)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < n && Instant::now() < deadline {
        link.recv_many(16, &mut got).unwrap();
        std::thread::yield_now();
    }
    got.into_iter().map(|r| (r.frame, r.ip_id)).collect()
}

#[test]
fn gather_sends_are_the_pieces_laid_end_to_end() {
    use std::io::IoSlice;
    // Three packets of 20 bytes, each as head + payload + trailer, and a
    // 9-byte last one: one GSO batch of segments of 20.
    let (head, body, tail) = (vec![1u8; 6], vec![2u8; 10], vec![3u8; 4]);
    let last = vec![4u8; 9];
    let iov = [
        IoSlice::new(&head),
        IoSlice::new(&body),
        IoSlice::new(&tail),
        IoSlice::new(&head),
        IoSlice::new(&body),
        IoSlice::new(&tail),
        IoSlice::new(&head),
        IoSlice::new(&body),
        IoSlice::new(&tail),
        IoSlice::new(&last),
    ];
    let frame = [&head[..], &body, &tail].concat();
    let want = vec![(frame.clone(), 0), (frame.clone(), 1), (frame.clone(), 2), (last.clone(), 3)];
    for gso in [true, false] {
        let (a, b) = udp_pair();
        let (a, b) = (a.with_gso(gso), b.with_gso(gso));
        a.add_peer(b.gid(), b.local_addr());
        a.send_gather(&b.gid(), &iov, 20).unwrap();
        let got = take(&b, 4);
        if gso {
            assert_eq!(got, want);
        } else {
            // Datagram by datagram: each arrives alone, as identification 0.
            assert_eq!(got, want.iter().map(|(f, _)| (f.clone(), 0)).collect::<Vec<_>>());
        }
        assert_eq!(a.stats().sent, 4);
        // One frame from pieces (seg 0, or a seg as large as the frame).
        a.send_gather(&b.gid(), &iov[..3], 0).unwrap();
        a.send_gather(&b.gid(), &iov[..3], 20).unwrap();
        assert_eq!(take(&b, 2), vec![(frame.clone(), 0), (frame.clone(), 0)]);
        // A single frame too large, and an unknown destination.
        let big = vec![0u8; MAX_FRAME_LEN + 1];
        assert_eq!(a.send_gather(&b.gid(), &[IoSlice::new(&big)], 0), Err(LinkError::TooLarge));
        let mut nowhere: Gid = [0; 16];
        nowhere[0] = 0xFE;
        assert_eq!(a.send_gather(&nowhere, &iov[..3], 0), Err(LinkError::UnknownDestination));
        assert_eq!(a.send_gather(&nowhere, &iov, 20), Err(LinkError::UnknownDestination));
        assert_eq!(a.stats().sent, 6);
    }
    // The switch (the trait's default) copies the pieces and cuts the batch.
    let sw = VirtualSwitch::new(Faults::none());
    let (ga, gb) = (gid_from_ipv4(Ipv4Addr::new(10, 9, 1, 1)), gid_from_ipv4(Ipv4Addr::new(10, 9, 1, 2)));
    let (a, b) = (sw.attach(ga).unwrap(), sw.attach(gb).unwrap());
    a.send_gather(&gb, &iov, 20).unwrap();
    a.send_gather(&gb, &iov[..3], 0).unwrap();
    let mut all = want.iter().map(|(f, _)| (f.clone(), 0)).collect::<Vec<_>>();
    all.push((frame, 0));
    assert_eq!(take(b.as_ref(), 5), all);
}

#[test]
fn udp_gso_segments_reach_a_receiver_without_gro_with_their_ip_ids() {
    // Without UDP_GRO the receiving kernel cuts the GSO batch itself: the
    // datagrams arrive one by one, each with the IPv4 identification the
    // sender's batch gave it (0, 1, 2...), which the receiver cannot see. It
    // assumes 0 and the ICRC search finds the real one: this checks what
    // Linux writes, not just what accel assumes.
    let (a, b) = udp_pair();
    let b = b.with_gso(false);
    assert!(a.gso() && !b.gso());
    a.add_peer(b.gid(), b.local_addr());
    let (ip, port) = (Ipv4Addr::LOCALHOST, a.local_addr().port());
    let packets: Vec<Packet> = (0..6u32)
        .map(|i| Packet::builder(Opcode::RdmaWriteMiddle, 7, i).payload(vec![i as u8; 256]).build().unwrap())
        .collect();
    let frames: Vec<Vec<u8>> = packets.iter().zip(0u16..).map(|(p, id)| p.encode_for_id(ip, ip, port, id)).collect();
    a.send_segments(&b.gid(), frames.clone()).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < 6 && Instant::now() < deadline {
        b.recv_many(16, &mut got).unwrap();
    }
    assert_eq!(
        got.iter().map(|r| (r.frame.clone(), r.ip_id)).collect::<Vec<_>>(),
        frames.iter().map(|f| (f.clone(), 0)).collect::<Vec<_>>()
    );
    for (i, (r, p)) in got.iter().zip(&packets).enumerate() {
        // The exact check passes only for the first; the search finds the others.
        assert_eq!(Packet::decode_from(ip, ip, r.src_port, &r.frame).is_ok(), i == 0, "segment {i}");
        assert_eq!(Packet::decode_from_id(ip, ip, r.src_port, r.ip_id, &r.frame).as_ref(), Ok(p), "segment {i}");
    }
}

#[test]
fn udp_datagrams_leave_with_df_and_ip_id_0() {
    // The ICRC covers the IPv4 identification, which a UDP socket cannot
    // see: read the real headers with a raw socket (needs CAP_NET_RAW;
    // skipped without it). Linux's default PMTU mode would number DF
    // datagrams from a counter; UdpLink's IP_PMTUDISC_DO gives 0.
    use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, socket};
    let raw = match socket(AddressFamily::Inet, SockType::Raw, SockFlag::SOCK_NONBLOCK, SockProtocol::Udp) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("skipping: no raw socket ({e})");
            return;
        }
    };
    let (a, b) = udp_pair();
    a.add_peer(b.gid(), b.local_addr());
    let (ip, port) = (Ipv4Addr::LOCALHOST, a.local_addr().port());
    let p = Packet::builder(Opcode::SendOnly, 9, 1).payload(vec![5; 64]).build().unwrap();
    for _ in 0..3 {
        a.send(&b.gid(), p.encode_for(ip, ip, port)).unwrap();
    }
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 2048];
    use std::os::fd::AsRawFd;
    while seen.len() < 3 && Instant::now() < deadline {
        match recv(raw.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            // IPv4 header, then UDP: keep only our datagrams (to b's port).
            Ok(n) if n >= 28 && u16::from_be_bytes([buf[22], buf[23]]) == b.local_addr().port() => {
                let id = u16::from_be_bytes([buf[4], buf[5]]);
                let df = buf[6] & 0x40 != 0;
                seen.push((id, df));
            }
            Ok(_) => {}
            Err(_) => thread::sleep(Duration::from_millis(1)),
        }
    }
    assert_eq!(seen, vec![(0, true); 3]);
}
