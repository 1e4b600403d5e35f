use super::*;

#[test]
fn a_connection_is_idle_only_when_nothing_moved_nothing_is_in_flight_and_nothing_waits() {
    let activity = Arc::new(Activity::default());
    assert_eq!(activity.look(), Look::Idle);

    activity.moved.store(true, Relaxed);
    assert_eq!(activity.look(), Look::Busy, "bytes moved since the last look");
    assert_eq!(activity.look(), Look::Idle, "each look starts a new period");

    let request = InFlight::new(&activity);
    assert!(activity.started.load(Relaxed));
    assert_eq!(activity.look(), Look::Busy, "a request in flight, however quiet");
    assert_eq!(activity.look(), Look::Busy);
    drop(request);
    assert_eq!(activity.look(), Look::Idle);

    activity.head_arriving.store(true, Relaxed);
    assert_eq!(activity.look(), Look::Busy, "hyper holds part of a head");
    drop(InFlight::new(&activity));
    assert_eq!(activity.look(), Look::Idle, "a request started from it");

    activity.wrote::<usize>(&Poll::Pending);
    assert_eq!(activity.look(), Look::Busy, "hyper may hold bytes the client has not taken");
    activity.wrote(&Poll::Ready(Ok(10usize)));
    assert_eq!(activity.look(), Look::Busy, "the write moved bytes");
    assert_eq!(activity.look(), Look::Idle);
}

#[test]
fn unread_bytes_keep_their_order_and_leave_hyper_s_buffer() {
    assert!(unread(Bytes::new(), Bytes::new()).is_empty());
    let prefix = Bytes::from_static(b"rest");
    assert_eq!(unread(Bytes::new(), prefix.clone()), prefix);

    let mut hyper_buf = BytesMut::with_capacity(8192);
    hyper_buf.extend_from_slice(b"GET / HT");
    let kept = unread(hyper_buf.freeze(), Bytes::from_static(b"TP/1.1\r\n"));
    assert_eq!(kept, Bytes::from_static(b"GET / HTTP/1.1\r\n"));
    assert!(kept.len() < 64, "a copy of the bytes, not the 8 KB buffer");
}

#[test]
fn a_head_s_deadline_is_renewed_only_by_a_request_never_by_waiting_or_trickling() {
    let activity = Arc::new(Activity::default());
    let timeout = Duration::from_secs(10);
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let first = Some(at(10));

    // Idle time and bytes of a head that has not completed leave the deadline where it was.
    assert_eq!(head_deadline(first, &activity, at(1), timeout), first);
    activity.head_arriving.store(true, Relaxed);
    activity.moved.store(true, Relaxed);
    assert_eq!(head_deadline(first, &activity, at(2), timeout), first);

    // While a request is in flight no head is awaited; the wait for the next starts when the
    // look after it finds none in flight, never from before it.
    let request = InFlight::new(&activity);
    assert_eq!(head_deadline(first, &activity, at(3), timeout), None);
    drop(request);
    assert_eq!(head_deadline(None, &activity, at(4), timeout), Some(at(14)));
    assert_eq!(head_deadline(Some(at(14)), &activity, at(5), timeout), Some(at(14)));

    // A request that started and finished between two looks starts a new wait too.
    drop(InFlight::new(&activity));
    assert_eq!(head_deadline(Some(at(14)), &activity, at(6), timeout), Some(at(16)));

    // The task looks again after QUIET, or at the deadline if that comes first.
    assert_eq!(next_look(at(6), Some(at(16))), at(6) + QUIET);
    assert_eq!(next_look(at(6), None), at(6) + QUIET);
    let soon = at(6) + QUIET / 4;
    assert_eq!(next_look(at(6), Some(soon)), soon);
}
