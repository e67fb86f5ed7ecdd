//! At least 100k jobs from at least 8 threads: each thread has its own file,
//! context and two queues, and chains every pair of jobs across them with a
//! binary syncobj and a timeline. Must finish without deadlock and with every
//! counter back to zero.

mod common;
use accel_uapi::sys;
use common::*;
use std::sync::Arc;
use std::thread;

const THREADS: u64 = 8;
const JOBS_PER_THREAD: u64 = 12_800; // 102,400 in all

#[test]
fn a_hundred_thousand_jobs_from_eight_threads() {
    let rig = Arc::new(Rig::new());
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let rig = rig.clone();
        handles.push(thread::spawn(move || {
            let sp = Space::new(rig.open(), 1);
            let (q1, q2) = (sp.queue(), sp.queue());
            let tl = syncobj(&sp.c, sys::ACCEL_SYNCOBJ_CREATE_TIMELINE).unwrap();
            let link = syncobj(&sp.c, 0).unwrap();
            // Pre-write a small ring of chunks: job n stores n at slot n % 8.
            let chunks: Vec<sys::accel_chunk> =
                (0..8u64).map(|k| sp.chunk(k * 64, &cmd::write(VA_START + 8 * k, k, 8))).collect();
            let mut n = 0u64;
            while n < JOBS_PER_THREAD {
                // A pair: q1 signals `link`, q2 waits for it and signals the timeline.
                let c = chunks[(n % 8) as usize];
                submit(&sp.c, q1, &[c], &[], &[sync(link, 0)], sys::ACCEL_SUBMIT_BLOCK).unwrap();
                submit(&sp.c, q2, &[c], &[sync(link, 0)], &[sync(tl, n + 2)], sys::ACCEL_SUBMIT_BLOCK).unwrap();
                n += 2;
            }
            wait(&sp.c, &[tl], Some(&[JOBS_PER_THREAD]), 0, in_ms(60_000)).unwrap();
            assert_eq!(query(&sp.c, &[tl])[0], (JOBS_PER_THREAD, 0), "thread {t}: every job succeeded");
            let Space { c, map, cmd_map, .. } = sp;
            drop((map, cmd_map));
            c.close();
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    wait_idle(&rig);
    assert_eq!(rig.mock.totals().jobs_run, THREADS * JOBS_PER_THREAD);
}
