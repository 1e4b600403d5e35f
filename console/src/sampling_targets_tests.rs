use super::super::sampling_rules::SamplingRule;
use super::*;
use serde_json::json;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccc";

fn rules(reservoir: i64) -> Rules {
    let mut rules = Rules::new(100.0);
    let rule: SamplingRule = serde_json::from_value(json!({
        "RuleName": "api", "ResourceARN": "*", "Priority": 10, "FixedRate": 0.25, "ReservoirSize": reservoir,
        "ServiceName": "*", "ServiceType": "*", "Host": "*", "HTTPMethod": "*", "URLPath": "/api/*", "Version": 1
    }))
    .expect("rule");
    rules.create(rule, 200.0).expect("created");
    rules
}

fn doc(rule: &str, client: &str, requests: u64, sampled: u64, borrowed: u64) -> StatisticsDocument {
    serde_json::from_value(json!({
        "RuleName": rule, "ClientID": client, "Timestamp": 1000, "RequestCount": requests,
        "SampledCount": sampled, "BorrowCount": borrowed
    }))
    .expect("statistics document")
}

fn quota(answer: &TargetsAnswer, rule: &str) -> u64 {
    answer.sampling_target_documents.iter().find(|t| t.rule_name == rule).map(|t| t.reservoir_quota).expect("target")
}

#[test]
fn shares_are_max_min_fair_and_hand_out_the_whole_reservoir() {
    assert_eq!(fair_shares(10, &[100.0, 100.0, 100.0], 0), [4, 3, 3]);
    // The quiet client gets what it needs; the busy ones split the rest.
    assert_eq!(fair_shares(10, &[1.0, 50.0, 50.0], 0), [1, 5, 4]);
    // One needs a little more than the others' even split: max-min, it shares the rest with the busiest.
    assert_eq!(fair_shares(10, &[3.0, 4.0, 100.0], 1), [3, 3, 4]);
    // Nobody needs it all: the rest is spread evenly.
    assert_eq!(fair_shares(9, &[1.0, 2.0, 0.0], 0), [3, 4, 2]);
    assert_eq!(fair_shares(0, &[5.0, 5.0], 3), [0, 0]);
    assert_eq!(fair_shares(5, &[], 1), Vec::<u64>::new());
    for turn in 0..4 {
        for (reservoir, demands) in [(7, vec![0.5, 3.2, 9.0, f64::NAN]), (1, vec![10.0, 10.0]), (100, vec![1.0])] {
            let shares = fair_shares(reservoir, &demands, turn);
            assert_eq!(shares.iter().sum::<u64>(), reservoir, "{demands:?}");
        }
        // Never more than a client needs while another needs more.
        let shares = fair_shares(10, &[3.0, 4.0, 100.0], turn);
        assert!(shares[0] == 3 && shares[1] <= 4, "{shares:?}");
    }
}

#[test]
fn odd_units_go_to_each_busy_client_in_turn() {
    // A reservoir of 1 among 3 equally busy clients: each poll round hands it to the next one.
    let rounds: Vec<Vec<u64>> = (0..6).map(|turn| fair_shares(1, &[50.0, 50.0, 50.0], turn)).collect();
    assert_eq!(rounds[..3], [vec![1, 0, 0], vec![0, 1, 0], vec![0, 0, 1]]);
    assert_eq!(rounds[3..], rounds[..3]);
    // Two odd units among three: over three rounds each client has them twice.
    let mut got = [0; 3];
    for turn in 0..3 {
        let shares = fair_shares(5, &[50.0, 50.0, 50.0], turn);
        assert_eq!(shares.iter().sum::<u64>(), 5);
        got.iter_mut().zip(shares).for_each(|(g, s)| *g += s);
    }
    assert_eq!(got, [5, 5, 5]);

    // Through the API: three clients polling every 10 s, each round the quota moves on.
    let rules = rules(1);
    let mut targets = Targets::default();
    let mut quotas: Vec<[u64; 3]> = Vec::new();
    for round in 0..6 {
        let t = 1000.0 + 10.0 * f64::from(round);
        let mut this = [0; 3];
        for (k, client) in [A, B, C].into_iter().enumerate() {
            this[k] = quota(&targets.report(&rules, &[doc("api", client, 500, 1, 0)], t + k as f64 / 10.0), "api");
        }
        quotas.push(this);
    }
    // From the second round on, all three are known: one unit a round, each client's in turn.
    for q in &quotas[1..] {
        assert_eq!(q.iter().sum::<u64>(), 1, "{quotas:?}");
    }
    let holders: Vec<usize> = quotas[1..].iter().map(|q| q.iter().position(|&n| n == 1).unwrap_or(9)).collect();
    for k in 0..3 {
        assert!(holders.contains(&k), "client {k} never got the reservoir: {quotas:?}");
    }
}

#[test]
fn one_client_gets_the_whole_reservoir_with_the_rule_s_rate() {
    let rules = rules(6);
    let mut targets = Targets::default();
    let answer = targets.report(&rules, &[doc("api", A, 50, 10, 1), doc("Default", A, 5, 1, 0)], 1000.0);
    assert_eq!(answer.unprocessed_statistics, []);
    assert_eq!(answer.last_rule_modification, 200.0);
    let api = &answer.sampling_target_documents[0];
    assert_eq!((api.rule_name.as_str(), api.fixed_rate, api.reservoir_quota), ("api", 0.25, 6));
    assert_eq!((api.reservoir_quota_ttl, api.interval), (1015.0, 10));
    assert_eq!(quota(&answer, "Default"), 1);
    let json = serde_json::to_value(&answer).expect("serializes");
    assert_eq!(json["SamplingTargetDocuments"][0]["ReservoirQuotaTTL"], 1015.0);
}

#[test]
fn clients_reporting_the_same_rule_share_its_reservoir() {
    let rules = rules(10);
    let mut targets = Targets::default();
    // Every client polls every 10 s; A sees 1 request per second, B and C 100.
    targets.report(&rules, &[doc("api", A, 10, 1, 0)], 1000.0);
    targets.report(&rules, &[doc("api", B, 1000, 10, 0)], 1001.0);
    targets.report(&rules, &[doc("api", C, 1000, 10, 0)], 1002.0);
    let a = quota(&targets.report(&rules, &[doc("api", A, 10, 1, 0)], 1010.0), "api");
    let b = quota(&targets.report(&rules, &[doc("api", B, 1000, 10, 0)], 1011.0), "api");
    let c = quota(&targets.report(&rules, &[doc("api", C, 1000, 10, 0)], 1012.0), "api");
    assert_eq!(a, 1, "the quiet client needs one per second");
    assert_eq!(a + b + c, 10, "together they sample the reservoir, no more");
    assert!(b.abs_diff(c) <= 1, "the busy clients share evenly: {b} and {c}");

    // B and C stop reporting: after the active window A has the whole reservoir again.
    assert_eq!(quota(&targets.report(&rules, &[doc("api", A, 10, 1, 0)], 1045.0), "api"), 10);
}

#[test]
fn unknown_rules_and_bad_client_ids_are_unprocessed_not_fatal() {
    let rules = rules(1);
    let mut targets = Targets::default();
    let answer = targets.report(
        &rules,
        &[doc("nope", A, 1, 1, 0), doc("api", "short", 1, 1, 0), doc("api", B, 3, 1, 0)],
        1000.0,
    );
    let why: Vec<(&str, &str)> =
        answer.unprocessed_statistics.iter().map(|u| (u.rule_name.as_str(), u.error_code.as_str())).collect();
    assert_eq!(why, [("nope", "400"), ("api", "400")]);
    assert!(answer.unprocessed_statistics[1].message.contains("ClientID"));
    assert_eq!(answer.sampling_target_documents.len(), 1);
}

#[test]
fn impossible_counts_are_unprocessed_and_huge_ones_saturate() {
    let rules = rules(1);
    let mut targets = Targets::default();
    let answer = targets.report(&rules, &[doc("api", A, 10, 50, 0), doc("api", B, 10, 1, 40)], 1000.0);
    assert_eq!(answer.unprocessed_statistics.len(), 2);
    assert!(answer.unprocessed_statistics[0].message.contains("RequestCount"));
    let huge = u64::MAX / 2 + 1;
    targets.report(&rules, &[doc("api", A, huge, huge, huge)], 1001.0);
    targets.report(&rules, &[doc("api", A, huge, huge, huge)], 1002.0);
    targets.report(&rules, &[doc("api", A, 40, 40, 40)], 1003.0);
    let stats = targets.statistics("api", 1003.0, 300);
    assert_eq!((stats.requests, stats.sampled, stats.borrowed), (u64::MAX, u64::MAX, u64::MAX));
}

#[test]
fn keeps_recent_statistics_per_rule() {
    let rules = rules(1);
    let mut targets = Targets::default();
    targets.report(&rules, &[doc("api", A, 40, 4, 1)], 1000.0);
    targets.report(&rules, &[doc("api", B, 60, 6, 2)], 1005.0);
    targets.report(&rules, &[doc("api", A, 100, 10, 0)], 1100.0);
    let recent = targets.statistics("api", 1100.0, 300);
    assert_eq!((recent.requests, recent.sampled, recent.borrowed, recent.clients), (200, 20, 3, 1));
    let last_minute = targets.statistics("api", 1100.0, 60);
    assert_eq!(last_minute.requests, 100);
    assert_eq!(targets.statistics("Default", 1100.0, 300), RuleStatistics { seconds: 300, ..Default::default() });
    targets.remove("api");
    assert_eq!(targets.statistics("api", 1100.0, 300).requests, 0);
}
