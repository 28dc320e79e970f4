#!/usr/bin/env python3
"""Checks of infra/template.yaml that cfn-lint does not make (run by scripts/test):

1. The AppSync schema is the repository's schema.graphql (one source of truth), and every
   resolver in the template names a field that exists in it.
2. No IAM statement has a wildcard action, and `Resource: '*'` appears only for actions
   that support no resource-level permissions (listed below).

Exits non-zero with one line per problem.
"""
import pathlib
import re
import sys

import yaml  # installed with cfn-lint

INFRA = pathlib.Path(__file__).resolve().parent
# Actions AWS documents as supporting no resource-level permissions.
STAR_RESOURCE_ALLOWED = {"ec2:DescribeNetworkInterfaces"}


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
        for statement in statements(resource.get("Properties", {})):
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

    for problem in problems:
        print(f"infra/template.yaml: {problem}")
    print(f"template checks: {len(resolvers)} resolver(s), {found} IAM statement(s), {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
