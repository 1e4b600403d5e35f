use super::*;

/// A ClientHello record with the given extensions, laid out as RFC 8446 §4.1.2 has it.
fn hello(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]); // random
    body.push(32);
    body.extend_from_slice(&[9; 32]); // session id
    body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]); // cipher suites
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut exts = Vec::new();
    for (kind, data) in extensions {
        exts.extend_from_slice(&kind.to_be_bytes());
        exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
        exts.extend_from_slice(data);
    }
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![CLIENT_HELLO];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![HANDSHAKE, 3, 1];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

fn sni(name: &[u8]) -> (u16, Vec<u8>) {
    let mut entry = vec![0];
    entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
    entry.extend_from_slice(name);
    let mut data = (entry.len() as u16).to_be_bytes().to_vec();
    data.extend_from_slice(&entry);
    (SERVER_NAME, data)
}

#[test]
fn the_server_name_is_read_from_a_client_hello() {
    let supported_versions = (0x002b, vec![2, 3, 4]);
    let record = hello(&[supported_versions, sni(b"DynamoDB.us-east-1.amazonaws.com")]);
    assert_eq!(parse(&record), Hello::Tls(Some("dynamodb.us-east-1.amazonaws.com".into())));
}

#[test]
fn a_hello_without_a_usable_name_is_tls_without_one() {
    assert_eq!(parse(&hello(&[])), Hello::Tls(None));
    assert_eq!(parse(&hello(&[sni(b"evil\"name\n")])), Hello::Tls(None));
    assert_eq!(parse(&hello(&[sni(b"")])), Hello::Tls(None));
}

#[test]
fn partial_records_wait_and_other_bytes_are_not_tls() {
    let record = hello(&[sni(b"api.example.com")]);
    for cut in [1, 4, 5, 6, 40, record.len() - 1] {
        assert_eq!(parse(&record[..cut]), Hello::Incomplete, "cut at {cut}");
    }
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
    assert_eq!(parse(&[HANDSHAKE, 2, 0]), Hello::NotTls);
    assert_eq!(parse(&[HANDSHAKE, 3, 1, 0, 4, 2, 0, 0, 0]), Hello::NotTls);
}

#[test]
fn truncated_or_lying_lengths_never_panic() {
    let record = hello(&[sni(b"api.example.com")]);
    for i in 5..record.len() {
        let mut broken = record.clone();
        broken[i] = 0xff;
        let _ = parse(&broken);
        broken.truncate(i);
        let _ = parse(&broken);
    }
}
