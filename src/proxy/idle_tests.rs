use super::*;

#[test]
fn a_connection_is_idle_only_when_nothing_moved_nothing_is_in_flight_and_nothing_waits() {
    let activity = Arc::new(Activity::new());
    assert_eq!(activity.look(), Look::Idle);

    activity.moved.store(true, Relaxed);
    assert_eq!(activity.look(), Look::Busy, "bytes moved since the last look");
    assert_eq!(activity.look(), Look::Idle, "each look starts a new period");

    let request = InFlight::new(&activity, None);
    let waits = Waits { keep_alive: Duration::from_secs(75), header_read: Duration::from_secs(10), stream_idle: None };
    assert_eq!(activity.next_deadline(Instant::now(), waits), None, "nothing awaited while in flight");
    assert_eq!(activity.look(), Look::Busy, "a request in flight, however quiet");
    assert_eq!(activity.look(), Look::Busy);
    drop(request);
    assert_eq!(activity.look(), Look::Idle);

    activity.head_arriving.store(true, Relaxed);
    assert_eq!(activity.look(), Look::Busy, "hyper holds part of a head");
    drop(InFlight::new(&activity, None));
    assert_eq!(activity.look(), Look::Idle, "a request started from it");

    activity.wrote::<usize>(&Poll::Pending);
    assert_eq!(activity.look(), Look::Busy, "hyper may hold bytes the client has not taken");
    activity.wrote(&Poll::Ready(Ok(10usize)));
    assert_eq!(activity.look(), Look::Busy, "the write moved bytes");
    assert_eq!(activity.look(), Look::Idle);

    let request = InFlight::new(&activity, None);
    activity.wrote(&Poll::Ready(Ok(10usize)));
    activity.wrote::<usize>(&Poll::Pending);
    assert_eq!(activity.look(), Look::Busy, "the response's first bytes went out before the write waited");
    assert_eq!(activity.look(), Look::Stuck, "a whole look with the response waiting on the client");
    activity.wrote(&Poll::Ready(Ok(10usize)));
    assert_eq!(activity.look(), Look::Busy, "the client took some");
    drop(request);
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
fn an_idle_connection_waits_the_keep_alive_timeout_and_a_head_the_header_timeout() {
    let activity = Arc::new(Activity::new());
    let waits = Waits { keep_alive: Duration::from_secs(75), header_read: Duration::from_secs(10), stream_idle: None };
    let now = Instant::now();
    assert_eq!(activity.ended_at(), activity.since.at(0), "no request yet: the connection's start");
    assert_eq!(activity.next_deadline(now, waits), Some(activity.since.at(0) + waits.keep_alive));

    // Bytes of a head: the header timeout, from the first look that sees them, and no later look
    // moves it.
    activity.head_arriving.store(true, Relaxed);
    let seen = Instant::now();
    let head = activity.next_deadline(seen, waits).expect("a deadline");
    assert_eq!(head, seen + waits.header_read);
    let later = seen + Duration::from_secs(3);
    assert_eq!(activity.next_deadline(later, waits), Some(head), "looking does not renew it");

    // While a request is in flight nothing is awaited; the keep-alive wait starts when it ends.
    let request = InFlight::new(&activity, None);
    assert_eq!(activity.next_deadline(Instant::now(), waits), None);
    std::thread::sleep(Duration::from_millis(5));
    let before = Instant::now();
    drop(request);
    let after = Instant::now();
    let ended = activity.ended_at();
    assert!(before <= ended && ended <= after, "the end is when the request ended");
    assert_eq!(activity.next_deadline(after, waits), Some(ended + waits.keep_alive));
    assert_eq!(activity.next_deadline(after + QUIET, waits), Some(ended + waits.keep_alive), "nor this one");

    // The next head is timed afresh, from when it is seen.
    activity.head_arriving.store(true, Relaxed);
    let again = after + Duration::from_secs(30);
    assert_eq!(activity.next_deadline(again, waits), Some(again + waits.header_read));

    // Of two pipelined requests, only the last one's end starts a new wait.
    std::thread::sleep(Duration::from_millis(5));
    let (one, two) = (InFlight::new(&activity, None), InFlight::new(&activity, None));
    drop(one);
    assert_eq!(activity.ended_at(), ended, "a request is still in flight");
    assert_eq!(activity.next_deadline(Instant::now(), waits), None);
    drop(two);
    let renewed = activity.next_deadline(Instant::now(), waits).expect("a deadline");
    assert!(renewed >= ended + waits.keep_alive + Duration::from_millis(5), "{renewed:?}");

    // The task looks again after QUIET, or at the deadline if that comes first.
    let now = Instant::now();
    assert_eq!(next_look(now, Some(now + waits.header_read)), now + QUIET);
    assert_eq!(next_look(now, None), now + QUIET);
    let soon = now + QUIET / 4;
    assert_eq!(next_look(now, Some(soon)), soon);
}
