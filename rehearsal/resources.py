"""Stand the stack's data resources up in moto, from the synthesized template.

moto's CloudFormation creates the types it models (tables with their GSIs, queues with their redrive
policies, the bucket, the KMS key, the SNS topic, the IAM roles, the log groups) from a template that holds
those resources only. The rest of what the functions need is created directly from the template's own
properties, and the output says so for each:

* secrets (moto's CloudFormation has no ``AWS::SecretsManager::Secret``),
* the functions' inline policies (``AWS::IAM::Policy``), with every statement's resources widened to ``*``:
  moto's evaluator refuses any call under a statement scoped to an ARN, so actions are enforced by moto
  and resources by the rehearsal's own matcher (rehearsal/policy.py),
* the Lambda functions themselves, with placeholder code (their handlers run in-process) so that their
  names and ARNs exist for the references and for ``lambda:InvokeFunction``,
* the resource policies of queues, bucket and topic,
* what moto's CloudFormation accepts but ignores: a table's TTL, a role's managed policies.

Everything else (the VPC, API Gateway, alarms, the event source mappings and the schedule, which the
rehearsal plays itself) is listed as not created.
"""

from __future__ import annotations

import functools
import io
import json
import secrets
import string
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rehearsal.runtime import PLAYED_REST_API_ID
from rehearsal.template import References, StackTemplate, Unresolvable, references_in

ACCOUNT_ID = "123456789012"

CLOUDFORMATION_TYPES = frozenset(
    {
        "AWS::DynamoDB::Table",
        "AWS::SQS::Queue",
        "AWS::S3::Bucket",
        "AWS::KMS::Key",
        "AWS::SNS::Topic",
        "AWS::IAM::Role",
        "AWS::Logs::LogGroup",
    }
)
DIRECT_TYPES = {
    "AWS::SecretsManager::Secret": "moto's CloudFormation does not model it",
    "AWS::Lambda::Function": "placeholder code: the handler runs in-process",
    "AWS::IAM::Policy": "resources widened to * for moto's evaluator; ARNs checked by the rehearsal",
    "AWS::SQS::QueuePolicy": "moto's CloudFormation does not model it",
    "AWS::S3::BucketPolicy": "moto's CloudFormation does not model it",
    "AWS::SNS::TopicPolicy": "moto's CloudFormation does not model it",
}
# The attributes moto's CloudFormation refuses in Fn::GetAtt, and how to compute them instead.
_NO_ARN_ATTRIBUTE = {"AWS::SNS::Topic"}


@dataclass(frozen=True)
class Created:
    logical_id: str
    resource_type: str
    how: str  # "cloudformation" or "direct (<why>)"
    physical_id: str


@dataclass
class Deployment:
    template: StackTemplate
    region: str
    references: References
    created: list[Created] = field(default_factory=list)
    not_created: dict[str, list[str]] = field(default_factory=dict)  # type -> logical ids
    notes: list[str] = field(default_factory=list)

    def physical_id(self, logical_id: str) -> str:
        return self.references.ref(logical_id)

    def summary_lines(self) -> list[str]:
        lines = []
        by_how: dict[str, list[Created]] = {}
        for item in self.created:
            by_how.setdefault(item.how, []).append(item)
        for how, items in sorted(by_how.items()):
            types: dict[str, int] = {}
            for item in items:
                types[item.resource_type] = types.get(item.resource_type, 0) + 1
            listed = ", ".join(f"{n} x {t}" for t, n in sorted(types.items()))
            lines.append(f"  {how}: {listed}")
        lines.extend(f"  direct: {note}" for note in self.notes)
        skipped = ", ".join(f"{len(ids)} x {t}" for t, ids in sorted(self.not_created.items()))
        lines.append(f"  not created (not data resources, or played by the rehearsal): {skipped}")
        return lines


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "# the rehearsal runs the real handler in-process\n")
    return buffer.getvalue()


def _generated_secret(spec: dict[str, Any]) -> str:
    alphabet = ""
    if not spec.get("ExcludeLowercase"):
        alphabet += string.ascii_lowercase
    if not spec.get("ExcludeUppercase"):
        alphabet += string.ascii_uppercase
    if not spec.get("ExcludeNumbers"):
        alphabet += string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += string.punctuation
    if spec.get("IncludeSpace"):
        alphabet += " "
    alphabet = "".join(c for c in alphabet if c not in spec.get("ExcludeCharacters", ""))
    value = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    if "SecretStringTemplate" in spec:
        document = json.loads(spec["SecretStringTemplate"])
        document[spec["GenerateStringKey"]] = value
        return json.dumps(document)
    return value


# moto checks some operations under their own name where IAM uses another action (IAM authorizes
# SendMessageBatch by sqs:SendMessage, Invoke by lambda:InvokeFunction): granted with the IAM action.
MOTO_ACTION_ALIASES = {
    "sqs:sendmessage": ("sqs:SendMessageBatch",),
    "sqs:deletemessage": ("sqs:DeleteMessageBatch",),
    "sqs:changemessagevisibility": ("sqs:ChangeMessageVisibilityBatch",),
    "lambda:invokefunction": ("lambda:Invoke",),
}


def widened(document: dict[str, Any]) -> dict[str, Any]:
    """The same actions (with moto's aliases for them), on every resource, without conditions: what moto's
    evaluator can enforce."""
    statements = document.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    out = []
    for statement in statements:
        copy = {k: v for k, v in statement.items() if k not in ("Resource", "NotResource", "Condition")}
        copy["Resource"] = "*"
        if "Action" in copy:
            actions = [copy["Action"]] if isinstance(copy["Action"], str) else list(copy["Action"])
            aliases = [alias for a in actions for alias in MOTO_ACTION_ALIASES.get(a.lower(), ())]
            copy["Action"] = actions + [a for a in aliases if a not in actions]
        out.append(copy)
    return {"Version": document.get("Version", "2012-10-17"), "Statement": out}


def stand_up(template: StackTemplate, session: Any, *, region: str) -> Deployment:
    """Create the data resources of `template` in moto (mock_aws must be active; IAM not yet enforced).

    One step per kind of resource, in this order: each step resolves references to what the steps before
    it created (a secret's KMS key, a function's role, a policy's queue)."""
    client: Callable[[str], Any] = functools.cache(lambda service: session.client(service, region_name=region))
    deployment = Deployment(template=template, region=region, references=_pseudo_references(template, region))
    _name_the_played_api(deployment)
    _create_modelled(deployment, client("cloudformation"))
    _enable_ttl(deployment, client("dynamodb"))
    _attach_managed_policies(deployment, client("iam"))
    _create_secrets(deployment, client("secretsmanager"))
    _create_functions(deployment, client("lambda"))
    _put_inline_policies(deployment, client("iam"))
    _put_resource_policies(deployment, client)
    done = {item.logical_id for item in deployment.created}
    for logical_id, resource in template.resources.items():
        if logical_id not in done:
            deployment.not_created.setdefault(resource["Type"], []).append(logical_id)
    return deployment


def _name_the_played_api(deployment: Deployment) -> None:
    """The rehearsal plays API Gateway rather than creating it; its id and stage name are what the API's URL
    (`Ref`s in a function's environment, e.g. the sender's GMP_PUBLIC_URL) resolves to."""
    for logical_id, resource in deployment.template.resources.items():
        if resource["Type"] == "AWS::ApiGateway::RestApi":
            deployment.references.refs[logical_id] = PLAYED_REST_API_ID
        elif resource["Type"] == "AWS::ApiGateway::Stage":
            deployment.references.refs[logical_id] = resource["Properties"]["StageName"]


def _pseudo_references(template: StackTemplate, region: str) -> References:
    return References(
        pseudo={
            "AWS::Partition": "aws",
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": template.stack_name,
        },
        azs=(f"{region}a", f"{region}b", f"{region}c"),
    )


def _stack_outputs(
    modelled: dict[str, Any], resources: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, tuple[str, str | None]]]:
    """An output for every reference made to a modelled resource (its Ref, its Arn, any other attribute
    the template reads), and the (logical id, attribute) each output name stands for: the stack's outputs
    are how moto's physical ids and attributes reach the references."""
    wanted: set[tuple[str, str | None]] = {(k, None) for k in modelled}
    wanted |= {(k, "Arn") for k, r in modelled.items() if r["Type"] not in _NO_ARN_ATTRIBUTE}
    wanted |= {(k, a) for k, a in references_in(resources) if k in modelled}
    outputs: dict[str, Any] = {}
    keys: dict[str, tuple[str, str | None]] = {}
    for index, (logical_id, attribute) in enumerate(sorted(wanted, key=lambda w: (w[0], w[1] or ""))):
        name = f"O{index}"
        keys[name] = (logical_id, attribute)
        value = {"Ref": logical_id} if attribute is None else {"Fn::GetAtt": [logical_id, attribute]}
        outputs[name] = {"Value": value}
    return outputs, keys


def _create_modelled(deployment: Deployment, cloudformation: Any) -> None:
    """moto's CloudFormation: the modelled data resources, in one stack."""
    template, references = deployment.template, deployment.references
    modelled = {k: r for k, r in template.resources.items() if r["Type"] in CLOUDFORMATION_TYPES}
    outputs, keys = _stack_outputs(modelled, template.resources)
    cloudformation.create_stack(
        StackName=template.stack_name,
        TemplateBody=json.dumps({"Resources": modelled, "Outputs": outputs}),
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    )
    stack = cloudformation.describe_stacks(StackName=template.stack_name)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise RuntimeError(f"moto's CloudFormation could not create the data resources: {stack['StackStatus']}")
    for output in stack.get("Outputs", []):
        logical_id, attribute = keys[output["OutputKey"]]
        if attribute is None:
            references.refs[logical_id] = output["OutputValue"]
        else:
            references.attributes[(logical_id, attribute)] = output["OutputValue"]
    for logical_id, resource in sorted(modelled.items()):
        if resource["Type"] in _NO_ARN_ATTRIBUTE:  # a topic's Ref is its ARN
            references.attributes[(logical_id, "TopicArn")] = references.refs[logical_id]
            references.attributes[(logical_id, "Arn")] = references.refs[logical_id]
        deployment.created.append(
            Created(logical_id, resource["Type"], "cloudformation (moto)", references.refs[logical_id])
        )


def _enable_ttl(deployment: Deployment, dynamodb: Any) -> None:
    """A table's TTL, which moto's CloudFormation accepts and ignores."""
    for logical_id, resource in deployment.template.of_type("AWS::DynamoDB::Table").items():
        ttl = resource.get("Properties", {}).get("TimeToLiveSpecification")
        if not (ttl and ttl.get("Enabled")):
            continue
        table = deployment.references.refs[logical_id]
        status = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]["TimeToLiveStatus"]
        if status != "ENABLED":
            dynamodb.update_time_to_live(
                TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )
            deployment.notes.append(f"TTL of {logical_id} ({ttl['AttributeName']}; moto's CloudFormation skips it)")


def _attach_managed_policies(deployment: Deployment, iam: Any) -> None:
    """A role's managed policies, which moto's CloudFormation accepts and ignores."""
    template, references = deployment.template, deployment.references
    for logical_id in template.of_type("AWS::IAM::Role"):
        role_name = references.refs[logical_id]
        attached = {p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]}
        for raw in template.managed_policy_arns(logical_id):
            arn = references.resolve(raw)
            if arn not in attached:
                iam.attach_role_policy(RoleName=role_name, PolicyArn=arn)
                deployment.notes.append(f"managed policy {arn.rsplit('/', 1)[-1]} on {logical_id} (skipped by moto)")


def _create_secrets(deployment: Deployment, secretsmanager: Any) -> None:
    references = deployment.references
    for logical_id, resource in deployment.template.of_type("AWS::SecretsManager::Secret").items():
        props = resource.get("Properties", {})
        if "SecretString" in props:
            secret_value = str(references.resolve(props["SecretString"]))
        else:
            secret_value = _generated_secret(props.get("GenerateSecretString", {}))
        name = props.get("Name") or f"{logical_id}-{secrets.token_hex(6)}"
        kwargs: dict[str, Any] = {"Name": name, "SecretString": secret_value}
        if props.get("KmsKeyId"):
            kwargs["KmsKeyId"] = references.resolve(props["KmsKeyId"])
        arn = secretsmanager.create_secret(**kwargs)["ARN"]
        references.refs[logical_id] = arn
        references.attributes[(logical_id, "Id")] = arn
        deployment.created.append(Created(logical_id, resource["Type"], _direct(resource["Type"]), arn))


def _create_functions(deployment: Deployment, awslambda: Any) -> None:
    """The functions, with placeholder code, so that their names and ARNs exist."""
    template, references = deployment.template, deployment.references
    code = _placeholder_zip()
    for spec in template.functions():
        props = spec.properties
        name = props.get("FunctionName") or f"{template.stack_name}-{spec.logical_id}"[:64]
        created = awslambda.create_function(
            FunctionName=name,
            Runtime=props.get("Runtime", "python3.11"),
            Role=references.resolve(props["Role"]),
            Handler=spec.handler,
            Code={"ZipFile": code},
            Timeout=spec.timeout,
            MemorySize=spec.memory,
        )
        if spec.reserved_concurrency is not None:
            awslambda.put_function_concurrency(
                FunctionName=name, ReservedConcurrentExecutions=int(spec.reserved_concurrency)
            )
        references.refs[spec.logical_id] = name
        references.attributes[(spec.logical_id, "Arn")] = created["FunctionArn"]
        deployment.created.append(
            Created(spec.logical_id, "AWS::Lambda::Function", _direct("AWS::Lambda::Function"), name)
        )


def _put_inline_policies(deployment: Deployment, iam: Any) -> None:
    """The roles' inline policies, widened for moto's evaluator (see `widened`)."""
    references = deployment.references
    for logical_id, resource in deployment.template.of_type("AWS::IAM::Policy").items():
        props = resource.get("Properties", {})
        document = widened(props.get("PolicyDocument", {}))
        for role in props.get("Roles", []):
            iam.put_role_policy(
                RoleName=references.resolve(role),
                PolicyName=props.get("PolicyName", logical_id),
                PolicyDocument=json.dumps(document),
            )
        references.refs[logical_id] = props.get("PolicyName", logical_id)
        deployment.created.append(Created(logical_id, resource["Type"], _direct(resource["Type"]), logical_id))


def _put_queue_policy(
    deployment: Deployment, client: Callable[[str], Any], logical_id: str, props: dict[str, Any]
) -> None:
    policy = json.dumps(deployment.references.resolve(props["PolicyDocument"]))
    for queue in props.get("Queues", []):
        client("sqs").set_queue_attributes(QueueUrl=deployment.references.resolve(queue), Attributes={"Policy": policy})


def _put_bucket_policy(
    deployment: Deployment, client: Callable[[str], Any], logical_id: str, props: dict[str, Any]
) -> None:
    document, dropped = _without_tls_denies(deployment.references.resolve(props["PolicyDocument"]))
    if dropped:
        deployment.notes.append(
            f"{logical_id} without its {dropped} deny(s) on aws:SecureTransport=false (moto sees an "
            "in-process request as plain HTTP; boto3 always uses HTTPS)"
        )
    client("s3").put_bucket_policy(Bucket=deployment.references.resolve(props["Bucket"]), Policy=json.dumps(document))


def _put_topic_policy(
    deployment: Deployment, client: Callable[[str], Any], logical_id: str, props: dict[str, Any]
) -> None:
    policy = json.dumps(deployment.references.resolve(props["PolicyDocument"]))
    for topic in props.get("Topics", []):
        client("sns").set_topic_attributes(
            TopicArn=deployment.references.resolve(topic), AttributeName="Policy", AttributeValue=policy
        )


# How each resource policy is put on its resource (moto's CloudFormation models none of them).
_RESOURCE_POLICIES: dict[str, Callable[[Deployment, Callable[[str], Any], str, dict[str, Any]], None]] = {
    "AWS::SQS::QueuePolicy": _put_queue_policy,
    "AWS::S3::BucketPolicy": _put_bucket_policy,
    "AWS::SNS::TopicPolicy": _put_topic_policy,
}


def _put_resource_policies(deployment: Deployment, client: Callable[[str], Any]) -> None:
    """The resource policies of queues, bucket and topic, in the template's order."""
    for logical_id, resource in deployment.template.resources.items():
        kind = resource["Type"]
        put = _RESOURCE_POLICIES.get(kind)
        if put is None:
            continue
        try:
            put(deployment, client, logical_id, resource.get("Properties", {}))
        except Unresolvable as exc:
            raise RuntimeError(f"{logical_id} ({kind}) refers to {exc}, which the rehearsal did not create") from None
        deployment.created.append(Created(logical_id, kind, _direct(kind), logical_id))


def _without_tls_denies(document: dict[str, Any]) -> tuple[dict[str, Any], int]:
    statements = document.get("Statement", [])
    kept = [
        s
        for s in statements
        if not (s.get("Effect") == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}})
    ]
    return {**document, "Statement": kept}, len(statements) - len(kept)


def _direct(resource_type: str) -> str:
    return f"direct ({DIRECT_TYPES[resource_type]})"
