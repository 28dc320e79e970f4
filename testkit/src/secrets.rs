//! Secrets Manager secrets in the local moto (which serves every AWS API it
//! mocks on one port), created and rotated through boto3 (installed with moto).

use std::process::Command;

fn boto3(endpoint: &str, code: &str, args: &[&str]) -> Result<String, String> {
    let script = format!(
        "import boto3, sys\n\
         c = boto3.client('secretsmanager', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
             aws_access_key_id='test', aws_secret_access_key='test')\n\
         {code}"
    );
    let output = Command::new(crate::dynamo::venv_python())
        .arg("-c")
        .arg(script)
        .arg(endpoint)
        .args(args)
        .output()
        .map_err(|e| format!("running boto3: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Creates the secret `name` with `value` (its `AWSCURRENT` version); returns its ARN.
pub fn create_secret(endpoint: &str, name: &str, value: &str) -> Result<String, String> {
    boto3(
        endpoint,
        "print(c.create_secret(Name=sys.argv[2], SecretString=sys.argv[3])['ARN'])",
        &[name, value],
    )
}

/// Puts a new value: it becomes `AWSCURRENT`, the old one `AWSPREVIOUS`
/// (what a rotation leaves behind). Returns the new version's id.
pub fn put_secret_value(endpoint: &str, arn: &str, value: &str) -> Result<String, String> {
    boto3(
        endpoint,
        "print(c.put_secret_value(SecretId=sys.argv[2], SecretString=sys.argv[3])['VersionId'])",
        &[arn, value],
    )
}
