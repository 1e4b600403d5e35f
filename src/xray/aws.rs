//! AWS service endpoints: `dynamodb.us-east-1.amazonaws.com` is drawn on the map as the X-Ray SDKs
//! draw their calls, an `aws` subsegment named `DynamoDB` with the region.

use serde::ser::{Serialize, SerializeMap, Serializer};

/// An AWS service endpoint a call went to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsService {
    /// The service's name as the X-Ray SDKs write it (`DynamoDB`, `S3`, `SQS`...), or the endpoint
    /// prefix for services not in [`NAMES`].
    pub name: String,
    /// The region in the host name, when it has one (global endpoints have none).
    pub region: Option<String>,
}

/// The `aws` object of a subsegment for an AWS service call, as the X-Ray SDKs write it; only the
/// region is known from the host (inside a tunnel the operation is encrypted).
pub struct AwsJson<'a>(pub &'a AwsService);

impl Serialize for AwsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(region) = &self.0.region {
            m.serialize_entry("region", region)?;
        }
        m.end()
    }
}

/// Endpoint prefixes and the names X-Ray shows for them.
const NAMES: [(&str, &str); 24] = [
    ("dynamodb", "DynamoDB"),
    ("s3", "S3"),
    ("sqs", "SQS"),
    ("sns", "SNS"),
    ("lambda", "Lambda"),
    ("sts", "STS"),
    ("kinesis", "Kinesis"),
    ("firehose", "Firehose"),
    ("kms", "KMS"),
    ("secretsmanager", "SecretsManager"),
    ("ssm", "SSM"),
    ("events", "EventBridge"),
    ("states", "SFN"),
    ("logs", "CloudWatchLogs"),
    ("monitoring", "CloudWatch"),
    ("email", "SES"),
    ("execute-api", "API Gateway"),
    ("athena", "Athena"),
    ("glue", "Glue"),
    ("ecr", "ECR"),
    ("iam", "IAM"),
    ("cognito-idp", "CognitoIdentityProvider"),
    ("bedrock-runtime", "BedrockRuntime"),
    ("xray", "XRay"),
];

/// The AWS service `host` (with or without a port) belongs to, if it is an `amazonaws.com` name.
///
/// Handles `svc.region.amazonaws.com`, global `svc.amazonaws.com`, virtual-hosted S3
/// (`bucket.s3.region.amazonaws.com`), `dualstack` and `-fips` variants, the legacy
/// `s3-region.amazonaws.com`, and the China partition (`amazonaws.com.cn`).
pub fn service(host: &str) -> Option<AwsService> {
    let host =
        host.rsplit_once(':').map_or(host, |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host });
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let rest = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let labels: Vec<&str> = rest.split('.').filter(|l| *l != "dualstack").collect();
    let (prefix, region) = match labels.iter().rposition(|l| is_region(l)) {
        Some(0) => return None,
        Some(i) => (labels[i - 1], Some(labels[i].to_owned())),
        None => {
            let last = *labels.last()?;
            match last.strip_prefix("s3-").filter(|r| is_region(r)) {
                Some(r) => ("s3", Some(r.to_owned())),
                None => (last, None),
            }
        }
    };
    let prefix = prefix.strip_suffix("-fips").unwrap_or(prefix);
    if prefix.is_empty() {
        return None;
    }
    // `api.ecr`, `runtime.sagemaker`: the service is the last label before the region.
    let name = NAMES.iter().find(|(p, _)| *p == prefix).map_or_else(|| prefix.to_owned(), |(_, n)| (*n).to_owned());
    Some(AwsService { name, region })
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`, `ap-southeast-4`...
fn is_region(label: &str) -> bool {
    let parts: Vec<&str> = label.split('-').collect();
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    parts.len() >= 3
        && first.len() == 2
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
        && parts[1..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(host: &str) -> Option<(String, Option<String>)> {
        service(host).map(|s| (s.name, s.region))
    }

    #[test]
    fn aws_endpoints_are_named_as_the_sdks_name_them() {
        let r = |s: &str| Some(s.to_owned());
        for (host, name, region) in [
            ("dynamodb.us-east-1.amazonaws.com", "DynamoDB", r("us-east-1")),
            ("dynamodb.us-east-1.amazonaws.com:443", "DynamoDB", r("us-east-1")),
            ("sqs.eu-west-1.amazonaws.com", "SQS", r("eu-west-1")),
            ("my-bucket.s3.us-west-2.amazonaws.com", "S3", r("us-west-2")),
            ("my-bucket.s3.amazonaws.com", "S3", None),
            ("s3.dualstack.ap-south-1.amazonaws.com", "S3", r("ap-south-1")),
            ("s3-us-west-2.amazonaws.com", "S3", r("us-west-2")),
            ("dynamodb-fips.us-gov-west-1.amazonaws.com", "DynamoDB", r("us-gov-west-1")),
            ("sts.amazonaws.com", "STS", None),
            ("api.ecr.eu-central-1.amazonaws.com", "ECR", r("eu-central-1")),
            ("abc123.execute-api.us-east-1.amazonaws.com", "API Gateway", r("us-east-1")),
            ("sns.cn-north-1.amazonaws.com.cn", "SNS", r("cn-north-1")),
            ("newservice.us-east-1.amazonaws.com", "newservice", r("us-east-1")),
        ] {
            assert_eq!(named(host), Some((name.to_owned(), region)), "{host}");
        }
    }

    #[test]
    fn other_hosts_are_not_aws() {
        for host in ["example.com", "amazonaws.com", "us-east-1.amazonaws.com", "amazonaws.com.evil.io", "10.0.0.1"] {
            assert_eq!(named(host), None, "{host}");
        }
    }
}
