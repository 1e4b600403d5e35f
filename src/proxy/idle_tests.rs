use super::*;

#[test]
fn a_connection_is_idle_only_when_nothing_moved_nothing_is_in_flight_and_nothing_waits() {
    let activity = Arc::new(Activity::new());
    assert_eq!(activity.look(), Look::Idle);

    activity.moved.store(true, Relaxed);
    assert_eq!(activity.look(), Look::Busy, "bytes moved since the last look");
    assert_eq!(activity.look(), Look::Idle, "each look starts a new period");

    let request = InFlight::new(&activity);
    assert_eq!(activity.head_deadline(Duration::from_secs(10)), None, "no head awaited while in flight");
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
fn a_head_s_deadline_counts_from_the_end_of_the_last_request_and_nothing_else_renews_it() {
    let activity = Arc::new(Activity::new());
    let timeout = Duration::from_secs(10);
    let first = Some(activity.since + timeout);
    assert_eq!(activity.ended_at(), activity.since, "no request yet: the connection's start");
    assert_eq!(activity.head_deadline(timeout), first);

    // Idle time and bytes of a head that has not completed leave the deadline where it was.
    activity.head_arriving.store(true, Relaxed);
    activity.moved.store(true, Relaxed);
    assert_eq!(activity.look(), Look::Busy);
    assert_eq!(activity.head_deadline(timeout), first);

    // While a request is in flight no head is awaited; the wait for the next starts when it ends.
    let request = InFlight::new(&activity);
    assert_eq!(activity.head_deadline(timeout), None);
    std::thread::sleep(Duration::from_millis(5));
    let before = Instant::now();
    drop(request);
    let after = Instant::now();
    let ended = activity.ended_at();
    assert!(before <= ended && ended <= after, "the end is when the request ended");
    assert_eq!(activity.head_deadline(timeout), Some(ended + timeout));
    assert_eq!(activity.head_deadline(timeout), Some(ended + timeout), "looking does not renew it");

    // Of two pipelined requests, only the last one's end starts a new wait.
    std::thread::sleep(Duration::from_millis(5));
    let (one, two) = (InFlight::new(&activity), InFlight::new(&activity));
    drop(one);
    assert_eq!(activity.ended_at(), ended, "a request is still in flight");
    assert_eq!(activity.head_deadline(timeout), None);
    drop(two);
    let renewed = activity.head_deadline(timeout).expect("a deadline");
    assert!(renewed >= ended + timeout + Duration::from_millis(5), "{renewed:?}");

    // The task looks again after QUIET, or at the deadline if that comes first.
    let now = Instant::now();
    assert_eq!(next_look(now, Some(now + timeout)), now + QUIET);
    assert_eq!(next_look(now, None), now + QUIET);
    let soon = now + QUIET / 4;
    assert_eq!(next_look(now, Some(soon)), soon);
}
