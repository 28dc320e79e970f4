#!/usr/bin/env python3
"""Checks of infra/template.yaml that cfn-lint does not make (run by scripts/test):

1. The AppSync schema is the repository's schema.graphql (one source of truth), and every
   resolver in the template names a field that exists in it.
2. No IAM statement has a wildcard action, and `Resource: '*'` appears only for actions
   that support no resource-level permissions (listed below).
3. Every function's binary is a [[bin]] of the package its CodeUri points at (each
   function is its own package of the workspace).
4. Every SQS event source reports batch item failures and sets its batch size and
   batching window; its queue has a redrive policy to a dead-letter queue in the
   template, a visibility timeout of at least six times the function's timeout, and
   alarms on the dead-letter queue's depth and on the queue's oldest message age.
5. Every metric of the functions' own namespaces that an alarm or the dashboard uses is
   one the code emits: the `METRICS` tables of src/report/emf.rs and processor/src/report.rs
   (each checked by a Rust test against what the EMF builder writes), the per-error-type
   `ItemErrors` with an `ErrorType` the resolver has, or a metric filter of this template.
   The operational alarms docs/operations.md's runbook covers all exist, and the dashboard's body
   is valid JSON.
6. Secure by default (docs/security.md): with every parameter at its default there is no API
   key and no output holds one; Cognito needs a user pool and an app client regex; AppSync
   logs, a query depth limit and a resolver count limit; the resolver's invoke permission and
   its data source role are scoped to this API; every queue refuses non-TLS access and the
   assessment queue refuses senders not named; log groups are KMS-encrypted; no admin group
   and no school claim are trusted.
7. Gradual deployments (docs/cutover.md): every function publishes a `live` alias that its
   callers (AppSync's data source, its role and invoke permission; the queue through SAM's
   event source) target; its DeploymentPreference is not AllAtOnce by default and rolls back
   on at least two alarms of the template, each scoped to that function's alias or version;
   the AppSync-facing function has a PreTraffic hook that is a function of this template
   named CodeDeployHook_* (all SAM's CodeDeploy role may invoke), testing `<function>.Version`,
   whose role is trusted by the resolver and may invoke only the resolver's versions.

Exits non-zero with one line per problem.
"""
import json
import pathlib
import re
import sys

import yaml  # installed with cfn-lint

INFRA = pathlib.Path(__file__).resolve().parent
# Actions AWS documents as supporting no resource-level permissions.
STAR_RESOURCE_ALLOWED = {"ec2:DescribeNetworkInterfaces", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !GetAtt, !Sub...) as plain values."""


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


CfnLoader.add_multi_constructor("!", _tag)


def query_fields(schema_text):
    """Field names of `type Query { ... }` (the schema is small and regular)."""
    match = re.search(r"type\s+Query\s*\{(.*?)\n\}", schema_text, re.S)
    if not match:
        return set()
    body = re.sub(r'"""(.*?)"""', "", match.group(1), flags=re.S)
    return set(re.findall(r"^\s*(\w+)\s*[(:]", body, re.M))


def main():
    path = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else INFRA / "template.yaml"
    template = yaml.load(path.read_text(), Loader=CfnLoader)
    resources = template["Resources"]
    problems = []

    schemas = [r for r in resources.values() if r["Type"] == "AWS::AppSync::GraphQLSchema"]
    if len(schemas) != 1:
        problems.append(f"expected one AWS::AppSync::GraphQLSchema, found {len(schemas)}")
    for schema in schemas:
        location = schema["Properties"].get("DefinitionS3Location")
        if location is None or (INFRA / location).resolve() != (INFRA / "../schema.graphql").resolve():
            problems.append(f"the AppSync schema must be ../schema.graphql, is {location!r}")
        if "Definition" in schema["Properties"]:
            problems.append("the AppSync schema is inlined; it must be schema.graphql")
    fields = query_fields((INFRA / "../schema.graphql").read_text())
    resolvers = [r for r in resources.values() if r["Type"] == "AWS::AppSync::Resolver"]
    if not resolvers:
        problems.append("no AWS::AppSync::Resolver")
    for resolver in resolvers:
        props = resolver["Properties"]
        if props.get("TypeName") != "Query" or props.get("FieldName") not in fields:
            problems.append(f"resolver for {props.get('TypeName')}.{props.get('FieldName')}: no such field in schema.graphql")
        if "RequestMappingTemplate" in props or "Code" in props:
            problems.append("the resolver must be a direct Lambda resolver (no templates or code)")

    def statements(node):
        if isinstance(node, dict):
            if "Effect" in node and "Action" in node:
                yield node
            for value in node.values():
                yield from statements(value)
        elif isinstance(node, list):
            for value in node:
                yield from statements(value)

    found = 0
    for name, resource in resources.items():
        # A key policy's Resource '*' is the key itself, and its administrators' kms:* is
        # AWS's default key policy.
        if resource["Type"] == "AWS::KMS::Key":
            continue
        for statement in statements(resource.get("Properties", {})):
            # A Deny narrows: a wildcard there refuses more, never grants.
            if statement.get("Effect") == "Deny":
                continue
            found += 1
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for action in actions:
                if isinstance(action, str) and "*" in action:
                    problems.append(f"{name}: wildcard action {action!r}")
            targets = statement.get("Resource", [])
            targets = targets if isinstance(targets, list) else [targets]
            if "*" in targets and not set(actions) <= STAR_RESOURCE_ALLOWED:
                problems.append(f"{name}: Resource '*' for {actions}")
    if found == 0:
        problems.append("no IAM statements found (the check would be vacuous)")

    problems += check_functions(resources)
    problems += check_secrets_stay_out_of_environments(resources)
    problems += check_metrics(resources)
    problems += check_secure_defaults(template)
    problems += check_deployments(template)
    problems += check_scoping(template)

    for problem in problems:
        print(f"infra/template.yaml: {problem}")
    functions = sum(1 for r in resources.values() if r["Type"] == "AWS::Serverless::Function")
    print(
        f"template checks: {len(resolvers)} resolver(s), {functions} function(s), "
        f"{found} IAM statement(s), {len(problems)} problem(s)"
    )
    return 1 if problems else 0


ROOT = INFRA.parent
# Namespace -> the source file whose METRICS table lists what the code emits.
METRIC_TABLES = {
    "AssessmentsResolver": ROOT / "src/report/emf.rs",
    "AssessmentProcessor": ROOT / "processor/src/report.rs",
}
# The alarms docs/operations.md's runbook covers: (namespace, metric).
REQUIRED_ALARMS = {
    ("AssessmentsResolver", "LegacyWorkerCrashes"),
    ("AssessmentsResolver", "LegacyWorkerHangs"),
    ("AssessmentsResolver", "LegacyBreakerOpened"),
    ("AssessmentsResolver", "NativeViolations"),
    ("AssessmentsResolver", "NativeLiveHandles"),
    ("AssessmentsResolver", "MaxMemoryUsedMB"),
    ("AWS/Lambda", "Duration"),
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    ("AssessmentProcessor", "PoisonRecords"),
}


def emitted_metrics(resources):
    """namespace -> metric names the code (or a metric filter here) emits."""
    emitted = {}
    for namespace, source in METRIC_TABLES.items():
        text = source.read_text()
        table = re.search(r"pub const METRICS: &MetricTable = &\[(.*?)\n\];", text, re.S)
        if not table:
            sys.exit(f"{source.relative_to(ROOT)}: no `pub const METRICS: &MetricTable` table to read")
        emitted[namespace] = set(re.findall(r'\(\s*"(\w+)",\s*"\w+",', table.group(1)))
    item_errors = re.search(r'ITEM_ERRORS_METRIC: &str = "(\w+)"', (ROOT / "src/report/emf.rs").read_text())
    if item_errors:
        emitted["AssessmentsResolver"].add(item_errors.group(1))
    for resource in resources.values():
        if resource["Type"] == "AWS::Logs::MetricFilter":
            for transform in resource["Properties"].get("MetricTransformations", []):
                emitted.setdefault(transform["MetricNamespace"], set()).add(transform["MetricName"])
    return emitted


def error_types():
    """The resolver's errorType strings."""
    text = (ROOT / "src/resolver/error.rs").read_text()
    return set(re.findall(r'ErrorType::\w+ => "(\w+)"', text))


def alarm_metrics(props):
    """(namespace, metric, dimensions) of an alarm: its one metric, or each of a metric-math
    alarm's `Metrics`."""
    if "Metrics" not in props:
        return [(props.get("Namespace"), props.get("MetricName"), props.get("Dimensions", []))]
    found = []
    for query in props["Metrics"]:
        metric = query.get("MetricStat", {}).get("Metric")
        if metric:
            found.append((metric.get("Namespace"), metric.get("MetricName"), metric.get("Dimensions", [])))
    return found


def check_metrics(resources):
    problems = []
    emitted = emitted_metrics(resources)
    for namespace, names in emitted.items():
        if not names:
            problems.append(f"no metrics found for {namespace} (the METRICS table moved?)")
    types = error_types()
    alarmed = set()
    for name, resource in resources.items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        for namespace, metric, dimensions in alarm_metrics(resource["Properties"]):
            alarmed.add((namespace, metric))
            if namespace in emitted and metric not in emitted[namespace]:
                problems.append(f"{name}: {namespace}/{metric} is not emitted by the code")
            for dimension in dimensions:
                if dimension.get("Name") == "ErrorType" and dimension.get("Value") not in types:
                    problems.append(f"{name}: ErrorType {dimension.get('Value')!r} is not one of {sorted(types)}")
    for namespace, metric in sorted(REQUIRED_ALARMS - alarmed):
        problems.append(f"no alarm on {namespace}/{metric}")

    # docs/operations.md documents every metric, and its runbook every alarm.
    operating = (ROOT / "docs" / "operations.md").read_text()
    runbook = operating.split("## Runbook", 1)[-1]
    for namespace, names in emitted.items():
        for metric in sorted(names):
            if f"`{metric}`" not in operating:
                problems.append(f"docs/operations.md: metric {namespace}/{metric} is not documented")
    for name, resource in resources.items():
        if resource["Type"] == "AWS::CloudWatch::Alarm" and f"**`{name}`**" not in runbook:
            problems.append(f"docs/operations.md, Runbook: no entry for {name}")

    dashboards = [(n, r) for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    if len(dashboards) != 1:
        problems.append(f"expected one dashboard, found {len(dashboards)}")
    for name, resource in dashboards:
        body = resource["Properties"]["DashboardBody"]
        # !Sub [template, variables]: put a placeholder in every ${...}.
        template = body["Sub"][0] if isinstance(body, dict) else body
        try:
            parsed = json.loads(re.sub(r"\$\{[^}]+\}", "0", template))
        except ValueError as e:
            problems.append(f"{name}: the dashboard body is not JSON: {e}")
            continue
        for widget in parsed.get("widgets", []):
            for row in widget.get("properties", {}).get("metrics", []):
                if row and isinstance(row[0], str) and row[0] in emitted and row[1] not in emitted[row[0]]:
                    problems.append(f"{name}: widget {widget['properties'].get('title')!r} shows {row[0]}/{row[1]}, not emitted")
    return problems


def check_secrets_stay_out_of_environments(resources):
    """A secret resolved into a function's environment is plaintext in the Lambda console and
    GetFunctionConfiguration: functions get the secret's ARN and read it at init."""
    problems = []
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        if "{{resolve:secretsmanager" in repr(variables):
            problems.append(f"{name}: a Secrets Manager value resolved into the environment; pass its ARN")
    return problems


def check_secure_defaults(template):
    resources, parameters = template["Resources"], template["Parameters"]
    problems = []
    default = lambda name: str(parameters.get(name, {}).get("Default", ""))  # noqa: E731
    if default("AuthMode") == "API_KEY":
        problems.append("AuthMode defaults to API_KEY: one static key would read every student")
    for name in ("AuthzAdminGroups", "AuthzSchoolClaim"):
        if default(name):
            problems.append(f"{name} has a default ({default(name)!r}): nothing is trusted unless named")
    if default("EncryptLogs") != "true":
        problems.append("EncryptLogs must default to true")
    if default("AssessmentProducerArns"):
        problems.append("AssessmentProducerArns must name nobody by default")
    for output, spec in template.get("Outputs", {}).items():
        if "ApiKey" in repr(spec.get("Value")):
            problems.append(f"output {output} holds the API key")
    rules = repr(template.get("Rules", {}))
    for name in ("CognitoUserPoolId", "CognitoAppIdClientRegex"):
        if name not in rules:
            problems.append(f"no rule requires {name} with Cognito")

    apis = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::AppSync::GraphQLApi"]
    for api in apis:
        pool = repr(api.get("UserPoolConfig"))
        if "AppIdClientRegex" not in pool:
            problems.append("the Cognito config has no AppIdClientRegex: any app client's token is accepted")
        log = api.get("LogConfig", {})
        if not log.get("CloudWatchLogsRoleArn") or log.get("FieldLogLevel") not in ("ERROR", "ALL"):
            problems.append("AppSync has no LogConfig with a role and field level ERROR")
        for limit in ("QueryDepthLimit", "ResolverCountLimit"):
            if limit not in api:
                problems.append(f"AppSync has no {limit}")
    if not any(r["Type"] == "AWS::Logs::LogGroup" and "/aws/appsync/" in repr(r["Properties"].get("LogGroupName"))
               for r in resources.values()):
        problems.append("no log group (retention) for AppSync's logs")

    permissions = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    if not any(p.get("Principal") == "appsync.amazonaws.com" and "SourceArn" in p
               and ref_name(p.get("FunctionName")) == "ResolverFunction" for p in permissions):
        problems.append("no invoke permission for AppSync scoped to the API (SourceArn) on the resolver")
    for p in permissions:
        if "SourceArn" not in p:
            problems.append(f"an invoke permission for {p.get('Principal')} without SourceArn")
    for name, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        trust = resource["Properties"]["AssumeRolePolicyDocument"]
        if "appsync.amazonaws.com" in repr(trust) and "aws:Source" not in repr(trust):
            problems.append(f"{name}: AppSync may assume it for any API (no aws:SourceArn/SourceAccount)")

    queues = {n for n, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    policies = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SQS::QueuePolicy"]
    for queue in sorted(queues):
        mine = [p for p in policies if any(ref_name(q) == queue for q in p.get("Queues", []))]
        if not any("aws:SecureTransport" in repr(p["PolicyDocument"]) for p in mine):
            problems.append(f"{queue}: no queue policy denying access without TLS (aws:SecureTransport)")
    if not any("sqs:SendMessage" in repr(p["PolicyDocument"]) and "AssessmentProducerArns" in repr(p["PolicyDocument"])
               for p in policies):
        problems.append("the assessment queue does not refuse senders other than AssessmentProducerArns")
    for name, resource in resources.items():
        if resource["Type"] == "AWS::Logs::LogGroup" and "KmsKeyId" not in resource["Properties"]:
            problems.append(f"{name}: log group without KmsKeyId")
    return problems


def check_scoping(template):
    """Each grant reaches this stack's own resources only (security.md, N10)."""
    resources, parameters = template["Resources"], template["Parameters"]
    problems = []
    text = lambda node: repr(node)  # noqa: E731
    hook = resources.get("PreTrafficHookRole", {})
    hook_statements = list(statements_of(hook))
    if any("-resolver:*" in text(s.get("Resource")) and s.get("Effect") == "Allow" for s in hook_statements):
        denied = [text(s.get("Resource")) for s in hook_statements if s.get("Effect") == "Deny"]
        for qualifier in (":live", ":$LATEST"):
            if not any(f"-resolver{qualifier}" in d for d in denied):
                problems.append(f"PreTrafficHookRole: resolver:* is not refused the {qualifier} qualifier")
    for name, resource in resources.items():
        if "/aws/appsync/apis/*" in text(resource.get("Properties")):
            problems.append(f"{name}: grants every AppSync API's log groups (/aws/appsync/apis/*)")
    for name, resource in resources.items():
        if resource["Type"] == "AWS::KMS::Key" and "log-group:*" in text(resource["Properties"]):
            problems.append(f"{name}: every log group of the account may use the key")
    policies = {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::SQS::QueuePolicy"}
    for name, policy in policies.items():
        denies = [s for s in policy["PolicyDocument"]["Statement"] if s.get("Effect") == "Deny"]
        consumers = [s for s in denies if "sqs:ReceiveMessage" in text(s.get("Action"))
                     and "sqs:PurgeQueue" in text(s.get("Action"))]
        if not consumers:
            problems.append(f"{name}: receiving, deleting and purging are not kept to named principals")
    dead_letters = policies.get("AssessmentDeadLetterQueuePolicy", {})
    if not any(s.get("Effect") == "Deny" and s.get("Action") == "sqs:SendMessage"
               and "ProcessorRole" in text(s.get("Condition"))
               for s in dead_letters.get("PolicyDocument", {}).get("Statement", [])):
        problems.append("the dead-letter queue accepts senders other than the processor")
    if str(parameters.get("QueueOperatorArns", {}).get("Default", "missing")) != "":
        problems.append("QueueOperatorArns must exist and name nobody by default")
    return problems


def ref_name(value):
    """The logical id a !Ref / !GetAtt points at (GetAtt as 'Name.Attr' or [Name, Attr];
    SAM's `!Ref Function.Alias` and `!Ref Function.Version` as the function)."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"].split(".")[0]
        if "GetAtt" in value:
            target = value["GetAtt"]
            return target.split(".")[0] if isinstance(target, str) else target[0]
    return None


def check_deployments(template):
    resources, parameters = template["Resources"], template["Parameters"]
    problems = []
    functions = {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    hooks = {}
    for name, props in functions.items():
        for hook in ((props.get("DeploymentPreference") or {}).get("Hooks") or {}).values():
            hooks[ref_name(hook)] = name
    served = set()
    for resource in resources.values():
        if resource["Type"] == "AWS::AppSync::DataSource":
            target = resource["Properties"].get("LambdaConfig", {}).get("LambdaFunctionArn")
            served.add(ref_name(target))
            if not (isinstance(target, dict) and str(target.get("Ref", "")).endswith(".Alias")):
                problems.append(f"AppSync's data source invokes {target!r}, not a function's alias")
    for name, props in functions.items():
        if name in hooks:
            if props.get("DeploymentPreference", {}).get("Enabled") is not False:
                problems.append(f"{name}: a hook must not itself be deployed gradually")
            continue
        if props.get("AutoPublishAlias") != "live":
            problems.append(f"{name}: no AutoPublishAlias: live (callers would invoke $LATEST)")
        preference = props.get("DeploymentPreference")
        if not preference:
            problems.append(f"{name}: no DeploymentPreference (every deploy takes all traffic at once)")
            continue
        kind = preference.get("Type")
        if ref_name(kind) in parameters:
            kind = parameters[ref_name(kind)].get("Default")
        if kind in (None, "AllAtOnce"):
            problems.append(f"{name}: the default deployment is {kind!r}, not gradual")
        alarms = [ref_name(a) for a in preference.get("Alarms", [])]
        if len(alarms) < 2:
            problems.append(f"{name}: {len(alarms)} rollback alarm(s), at least 2 wanted")
        for alarm in alarms:
            resource = resources.get(alarm, {})
            if resource.get("Type") != "AWS::CloudWatch::Alarm":
                problems.append(f"{name}: rollback alarm {alarm!r} is not an alarm of this template")
                continue
            scoped = False
            for _, _, dimensions in alarm_metrics(resource["Properties"]):
                for dimension in dimensions:
                    value = dimension.get("Value")
                    if dimension.get("Name") == "Resource" and f"${{{name}}}:live" in repr(value):
                        scoped = True
                    if dimension.get("Name") in ("ExecutedVersion", "Version") and value == {"GetAtt": f"{name}.Version.Version"}:
                        scoped = True
            if not scoped:
                problems.append(f"{alarm}: a rollback alarm of {name} not scoped to its alias or version")
        if name in served:
            hook = ref_name((preference.get("Hooks") or {}).get("PreTraffic"))
            if hook not in functions:
                problems.append(f"{name}: AppSync invokes it, and it has no PreTraffic hook of this template")
                continue
            hook_props = functions[hook]
            if "CodeDeployHook_" not in repr(hook_props.get("FunctionName")):
                problems.append(f"{hook}: its name must start CodeDeployHook_ (SAM's CodeDeploy role invokes only those)")
            target = hook_props.get("Environment", {}).get("Variables", {}).get("TARGET_FUNCTION_ARN")
            if target != {"Ref": f"{name}.Version"}:
                problems.append(f"{hook}: TARGET_FUNCTION_ARN is {target!r}, not !Ref {name}.Version")
            role = ref_name(hook_props.get("Role"))
            trusted = props.get("Environment", {}).get("Variables", {}).get("AUTHZ_TRUSTED_ROLE_ARNS")
            if {"GetAtt": f"{role}.Arn"} not in json_values(trusted):
                problems.append(f"{name}: AUTHZ_TRUSTED_ROLE_ARNS does not trust the hook's role {role}")
            policy = json.dumps(resources.get(role, {}).get("Properties", {}))
            if "codedeploy:PutLifecycleEventHookExecutionStatus" not in policy:
                problems.append(f"{role}: may not report to CodeDeploy")
            for statement in statements_of(resources.get(role, {})):
                granted = statement.get("Effect") == "Allow" and "lambda:InvokeFunction" in repr(statement.get("Action"))
                if granted and not repr(statement.get("Resource")).endswith(":*'}"):
                    problems.append(f"{role}: lambda:InvokeFunction on {statement.get('Resource')!r}, not only versions (…:*)")
    for name, resource in resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Lambda::Permission" and ref_name(props.get("FunctionName")) in served:
            if not str(props["FunctionName"].get("Ref", "")).endswith(".Alias"):
                problems.append(f"{name}: the invoke permission is not on the alias")
        if resource["Type"] == "AWS::IAM::Role" and "appsync.amazonaws.com" in repr(props.get("AssumeRolePolicyDocument")):
            for statement in statements_of(resource):
                if "lambda:InvokeFunction" in repr(statement.get("Action")) and ".Alias" not in repr(statement.get("Resource")):
                    problems.append(f"{name}: AppSync may invoke {statement.get('Resource')!r}, not the alias")
    if not served:
        problems.append("no AppSync Lambda data source (the deployment checks would be vacuous)")
    return problems


def json_values(node):
    """Every dict and scalar inside node (a parsed intrinsic function)."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from json_values(value)
    elif isinstance(node, list):
        for value in node:
            yield from json_values(value)


def statements_of(resource):
    for policy in resource.get("Properties", {}).get("Policies", []):
        yield from policy.get("PolicyDocument", {}).get("Statement", [])


def cargo_bins(code_uri):
    manifest = INFRA / str(code_uri) / "Cargo.toml"
    if not manifest.is_file():
        return set()
    return set(re.findall(r'\[\[bin\]\]\s*name\s*=\s*"([^"]+)"', manifest.read_text()))


def check_functions(resources):
    problems = []
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]

    def alarmed(queue, metric):
        for alarm in alarms:
            if alarm.get("Namespace") != "AWS/SQS" or alarm.get("MetricName") != metric:
                continue
            for dimension in alarm.get("Dimensions", []):
                if dimension.get("Name") == "QueueName" and ref_name(dimension.get("Value")) == queue:
                    return True
        return False

    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        code_uri = resource["Properties"].get("CodeUri")
        bins = cargo_bins(code_uri)
        if binary not in bins:
            problems.append(
                f"{name}: binary {binary!r} is not a [[bin]] of {code_uri}/Cargo.toml ({sorted(bins)})"
            )
        # Traced in AWS: active tracing, and a role that may send the segments.
        if resource["Properties"].get("Tracing") != "Active":
            problems.append(f"{name}: Tracing is not Active (its subsegments would never be sent)")
        role = resources.get(ref_name(resource["Properties"].get("Role")), {})
        if "xray:PutTraceSegments" not in json.dumps(role.get("Properties", {})):
            problems.append(f"{name}: its role does not allow xray:PutTraceSegments")
        timeout = resource["Properties"].get("Timeout", 3)
        for event_name, event in resource["Properties"].get("Events", {}).items():
            if event.get("Type") != "SQS":
                continue
            props = event["Properties"]
            where = f"{name}.{event_name}"
            if "ReportBatchItemFailures" not in props.get("FunctionResponseTypes", []):
                problems.append(f"{where}: no ReportBatchItemFailures (one failed record would redeliver the batch)")
            for required in ("BatchSize", "MaximumBatchingWindowInSeconds"):
                if required not in props:
                    problems.append(f"{where}: {required} not set")
            queue = ref_name(props.get("Queue"))
            queue_resource = resources.get(queue)
            if not queue_resource or queue_resource["Type"] != "AWS::SQS::Queue":
                problems.append(f"{where}: the queue is not an AWS::SQS::Queue of this template")
                continue
            qprops = queue_resource["Properties"]
            redrive = qprops.get("RedrivePolicy", {})
            dlq = ref_name(redrive.get("deadLetterTargetArn"))
            if dlq not in resources or resources[dlq]["Type"] != "AWS::SQS::Queue":
                problems.append(f"{queue}: no redrive policy to a dead-letter queue of this template")
            if "maxReceiveCount" not in redrive:
                problems.append(f"{queue}: the redrive policy has no maxReceiveCount")
            visibility = qprops.get("VisibilityTimeout", 30)
            if not isinstance(visibility, int) or not isinstance(timeout, int) or visibility < 6 * timeout:
                problems.append(f"{queue}: VisibilityTimeout {visibility} is under 6 x the function timeout {timeout}")
            if dlq and not alarmed(dlq, "ApproximateNumberOfMessagesVisible"):
                problems.append(f"{dlq}: no alarm on its depth (ApproximateNumberOfMessagesVisible)")
            if not alarmed(queue, "ApproximateAgeOfOldestMessage"):
                problems.append(f"{queue}: no alarm on ApproximateAgeOfOldestMessage")
    return problems


if __name__ == "__main__":
    sys.exit(main())
