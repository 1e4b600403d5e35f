use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    args: InitArgs,
}

fn args(extra: &[&str]) -> InitArgs {
    let mut argv = vec!["init"];
    argv.extend_from_slice(extra);
    Cmd::try_parse_from(argv).expect("arguments parse").args
}

#[test]
fn defaults_redirect_everything_but_the_proxy_itself() {
    let r = rules(&args(&[]), Family::V4, "");
    for line in [
        ":XRAY_INBOUND - [0:0]",
        "-A XRAY_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15100",
        "-A XRAY_OUT_REDIRECT -p tcp -j REDIRECT --to-ports 15101",
        "-A XRAY_INBOUND -p tcp --dport 15100 -j RETURN",
        "-A XRAY_INBOUND -p tcp --dport 15102 -j RETURN",
        "-A XRAY_INBOUND -p tcp -j XRAY_IN_REDIRECT",
        "-A XRAY_OUTBOUND -m owner --uid-owner 2500 -j RETURN",
        "-A XRAY_OUTBOUND -o lo -j RETURN",
        "-A XRAY_OUTBOUND -d 127.0.0.0/8 -j RETURN",
        "-A XRAY_OUTBOUND -d 169.254.0.0/16 -j RETURN",
        "-A XRAY_OUTBOUND -p tcp -j XRAY_OUT_REDIRECT",
        "-A PREROUTING -p tcp -j XRAY_INBOUND",
        "-A OUTPUT -p tcp -j XRAY_OUTBOUND",
    ] {
        assert!(r.lines().any(|l| l == line), "missing {line:?} in\n{r}");
    }
    assert!(r.starts_with("*nat\n") && r.ends_with("COMMIT\n"));
    // The UID exclusion comes before any redirect.
    let uid = r.find("--uid-owner").expect("uid rule");
    assert!(uid < r.find("-j XRAY_OUT_REDIRECT\n").expect("redirect"));
}

#[test]
fn exclusions_and_inclusions_are_honoured_per_family() {
    let a = args(&[
        "--exclude-inbound-ports",
        "22,8081",
        "--include-inbound-ports",
        "8080",
        "--exclude-outbound-ports",
        "5432",
        "--exclude-outbound-cidrs",
        "10.0.0.0/8,fd00::/8",
        "--include-outbound-cidrs",
        "10.100.0.0/16",
    ]);
    let v4 = rules(&a, Family::V4, "");
    for line in [
        "-A XRAY_INBOUND -p tcp --dport 22 -j RETURN",
        "-A XRAY_INBOUND -p tcp --dport 8081 -j RETURN",
        "-A XRAY_INBOUND -p tcp --dport 8080 -j XRAY_IN_REDIRECT",
        "-A XRAY_OUTBOUND -p tcp --dport 5432 -j RETURN",
        "-A XRAY_OUTBOUND -d 10.0.0.0/8 -j RETURN",
        "-A XRAY_OUTBOUND -p tcp -d 10.100.0.0/16 -j XRAY_OUT_REDIRECT",
    ] {
        assert!(v4.lines().any(|l| l == line), "missing {line:?} in\n{v4}");
    }
    assert!(!v4.contains("-A XRAY_INBOUND -p tcp -j XRAY_IN_REDIRECT"));
    assert!(!v4.contains("fd00::/8"));
    let v6 = rules(&a, Family::V6, "");
    assert!(v6.contains("-A XRAY_OUTBOUND -d fd00::/8 -j RETURN"));
    assert!(v6.contains("-A XRAY_OUTBOUND -d ::1/128 -j RETURN"));
    assert!(!v6.contains("10.0.0.0/8"));
    // An include list with no IPv6 range redirects no IPv6 traffic.
    assert!(!v6.contains("-j XRAY_OUT_REDIRECT\n-A") && !v6.contains("-A XRAY_OUTBOUND -p tcp -j XRAY_OUT_REDIRECT"));
}

#[test]
fn running_again_adds_no_second_jump() {
    let existing = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -j XRAY_INBOUND\n-A OUTPUT -p tcp -j XRAY_OUTBOUND\nCOMMIT\n";
    let r = rules(&args(&[]), Family::V4, existing);
    assert!(!r.contains("-A PREROUTING"), "{r}");
    assert!(!r.contains("-A OUTPUT"), "{r}");
    assert!(r.contains(":XRAY_OUTBOUND - [0:0]"));
}

#[test]
fn bad_values_are_refused_with_the_reason() {
    for (flag, value, why) in [
        ("--exclude-outbound-cidrs", "10.0.0.0/33", "prefix longer than 32"),
        ("--exclude-outbound-cidrs", "nonsense", "not a CIDR"),
        ("--exclude-inbound-ports", "70000", "70000"),
    ] {
        let err = Cmd::try_parse_from(["init", flag, value]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(flag) && err.contains(why), "{flag} {value}: {err}");
    }
    assert_eq!("fd00:ec2::254".parse::<Cidr>().map(|c| c.to_string()), Ok("fd00:ec2::254/128".to_owned()));
}

#[test]
fn ranges_hold_the_addresses_under_their_prefix() {
    let c = |s: &str| s.parse::<Cidr>().expect("cidr");
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    assert!(c("169.254.169.254").contains(ip("169.254.169.254")));
    assert!(!c("169.254.169.254").contains(ip("169.254.169.253")));
    assert!(c("10.0.0.0/8").contains(ip("10.200.3.4")));
    assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
    assert!(c("0.0.0.0/0").contains(ip("1.2.3.4")));
    assert!(c("fd00:ec2::254/128").contains(ip("fd00:ec2::254")));
    assert!(c("fd00::/8").contains(ip("fd12::1")));
    assert!(!c("fd00::/8").contains(ip("10.0.0.1")));
}
