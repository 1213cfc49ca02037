"""Reading a synthesized CloudFormation template: its functions, their roles' statements, and references.

Nothing here knows the stack's logical ids or the functions' variable names: everything is read from the
template (a function is any ``AWS::Lambda::Function``; its name in the rehearsal is the package of its
handler, ``functions.<name>.handler.handler``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PSEUDO_PARAMETERS = ("AWS::Partition", "AWS::Region", "AWS::AccountId", "AWS::URLSuffix", "AWS::StackName")


class Unresolvable(LookupError):
    """A reference to a resource (or attribute) the rehearsal did not create."""

    def __init__(self, logical_id: str, attribute: str | None = None) -> None:
        self.logical_id = logical_id
        self.attribute = attribute
        what = f"{logical_id}.{attribute}" if attribute else logical_id
        super().__init__(what)


@dataclass
class References:
    """Values of Ref and Fn::GetAtt for the resources created in moto, plus the pseudo parameters."""

    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    pseudo: dict[str, str] = field(default_factory=dict)
    azs: tuple[str, ...] = ()

    def ref(self, name: str) -> str:
        if name in self.pseudo:
            return self.pseudo[name]
        if name not in self.refs:
            raise Unresolvable(name)
        return self.refs[name]

    def get_att(self, logical_id: str, attribute: str) -> str:
        key = (logical_id, attribute)
        if key not in self.attributes:
            raise Unresolvable(logical_id, attribute)
        return self.attributes[key]

    def resolve(self, node: Any) -> Any:
        """Evaluate the intrinsic functions the CDK emits (Ref, GetAtt, Join, Sub, Select, GetAZs)."""
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), *_ = node.items()
            if key == "Ref":
                return self.ref(value)
            if key == "Fn::GetAtt":
                logical_id, attribute = value if isinstance(value, list) else value.split(".", 1)
                return self.get_att(logical_id, attribute)
            if key == "Fn::Join":
                separator, parts = value
                return separator.join(str(self.resolve(part)) for part in parts)
            if key == "Fn::Select":
                index, items = value
                return self.resolve(items)[int(index)]
            if key == "Fn::GetAZs":
                return list(self.azs)
            if key == "Fn::Sub":
                return self._sub(value)
        return {k: self.resolve(v) for k, v in node.items()}

    def _sub(self, value: Any) -> str:
        text, variables = (value, {}) if isinstance(value, str) else value
        resolved = {k: str(self.resolve(v)) for k, v in variables.items()}
        out, rest = [], text
        while "${" in rest:
            before, _, after = rest.partition("${")
            name, _, rest = after.partition("}")
            out.append(before)
            if name in resolved:
                out.append(resolved[name])
            elif "." in name:
                out.append(self.get_att(*name.split(".", 1)))
            else:
                out.append(self.ref(name))
        out.append(rest)
        return "".join(out)


def references_in(node: Any) -> Iterator[tuple[str, str | None]]:
    """Every (logical id, attribute or None for Ref) that `node` refers to."""
    if isinstance(node, list):
        for item in node:
            yield from references_in(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str) and value not in PSEUDO_PARAMETERS:
                yield value, None
            elif key == "Fn::GetAtt":
                logical_id, attribute = value if isinstance(value, list) else value.split(".", 1)
                yield logical_id, attribute
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                for piece in text.split("${")[1:]:
                    name = piece.split("}", 1)[0]
                    if name not in PSEUDO_PARAMETERS and not (isinstance(value, list) and name in value[1]):
                        yield (name.split(".", 1)[0], name.split(".", 1)[1]) if "." in name else (name, None)
                yield from references_in(value if isinstance(value, str) else value[1])
            else:
                yield from references_in(value)


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str  # api, sender, reporter, ... (from the handler's package)
    handler: str
    role_id: str
    environment: dict[str, Any]  # raw template values (intrinsics unresolved)
    timeout: int
    memory: int
    reserved_concurrency: int | None
    properties: dict[str, Any]


def function_name_of(handler: str) -> str:
    parts = handler.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "functions" else handler.rsplit(".", 1)[0]


class StackTemplate:
    def __init__(self, body: dict[str, Any], *, stack_name: str = "GenroMailProxy") -> None:
        self.body = body
        self.stack_name = stack_name

    @classmethod
    def load(cls, path: Path, *, stack_name: str | None = None) -> StackTemplate:
        name = stack_name or path.name.removesuffix(".template.json")
        return cls(json.loads(path.read_text()), stack_name=name)

    def copy(self) -> StackTemplate:
        return StackTemplate(copy.deepcopy(self.body), stack_name=self.stack_name)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self.body["Resources"]
        return resources

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.resources.items() if r["Type"] == resource_type}

    def properties(self, logical_id: str) -> dict[str, Any]:
        props: dict[str, Any] = self.resources[logical_id].get("Properties", {})
        return props

    def functions(self) -> list[FunctionSpec]:
        specs = []
        for logical_id, resource in self.of_type("AWS::Lambda::Function").items():
            props = resource.get("Properties", {})
            handler = props.get("Handler", "")
            role = props.get("Role", {})
            role_id = role["Fn::GetAtt"][0] if isinstance(role, dict) and "Fn::GetAtt" in role else ""
            specs.append(
                FunctionSpec(
                    logical_id=logical_id,
                    name=function_name_of(handler),
                    handler=handler,
                    role_id=role_id,
                    environment=dict(props.get("Environment", {}).get("Variables", {})),
                    timeout=int(props.get("Timeout", 3)),
                    memory=int(props.get("MemorySize", 128)),
                    reserved_concurrency=props.get("ReservedConcurrentExecutions"),
                    properties=props,
                )
            )
        return sorted(specs, key=lambda spec: spec.name)

    def function(self, name: str) -> FunctionSpec:
        for spec in self.functions():
            if spec.name == name:
                return spec
        raise KeyError(f"the template has no function named {name!r} (handler functions.{name}.handler.handler)")

    def role_policies(self, role_id: str) -> list[tuple[str, dict[str, Any]]]:
        """(origin, raw policy document) for every inline policy of the role: IAM::Policy resources naming it
        and the role's own `Policies` property."""
        found: list[tuple[str, dict[str, Any]]] = []
        for logical_id, resource in self.resources.items():
            if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                continue
            props = resource.get("Properties", {})
            if {"Ref": role_id} in props.get("Roles", []):
                found.append((logical_id, props.get("PolicyDocument", {})))
        for policy in self.properties(role_id).get("Policies", []) if role_id in self.resources else []:
            found.append((f"{role_id}/{policy.get('PolicyName')}", policy.get("PolicyDocument", {})))
        return found

    def managed_policy_arns(self, role_id: str) -> list[Any]:
        arns: list[Any] = self.properties(role_id).get("ManagedPolicyArns", []) if role_id in self.resources else []
        return arns

    def find(self, predicate: Callable[[str, dict[str, Any]], bool]) -> list[str]:
        return [k for k, r in self.resources.items() if predicate(k, r)]

    def event_sources_of(self, function_id: str) -> list[dict[str, Any]]:
        return [
            r.get("Properties", {})
            for r in self.of_type("AWS::Lambda::EventSourceMapping").values()
            if r.get("Properties", {}).get("FunctionName")
            in ({"Ref": function_id}, {"Fn::GetAtt": [function_id, "Arn"]})
        ]

    def schedules_of(self, function_id: str) -> list[tuple[str, dict[str, Any]]]:
        rules = []
        for logical_id, resource in self.of_type("AWS::Events::Rule").items():
            props = resource.get("Properties", {})
            targets = props.get("Targets", [])
            if any(t.get("Arn") == {"Fn::GetAtt": [function_id, "Arn"]} for t in targets) and props.get(
                "ScheduleExpression"
            ):
                rules.append((logical_id, props))
        return rules

    def is_rest_api_target(self, function_id: str) -> bool:
        return any(
            r.get("Properties", {}).get("Principal") == "apigateway.amazonaws.com"
            and r.get("Properties", {}).get("FunctionName") == {"Fn::GetAtt": [function_id, "Arn"]}
            for r in self.of_type("AWS::Lambda::Permission").values()
        )

    def stage_name(self) -> str:
        for resource in self.of_type("AWS::ApiGateway::Stage").values():
            return str(resource.get("Properties", {}).get("StageName", "prod"))
        return "prod"


def label(node: Any) -> str:
    """A template value as a short readable string: ``<Logical.Arn>/index/*`` for a Join of a GetAtt."""
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return ",".join(label(item) for item in node)
    if isinstance(node, dict) and len(node) == 1:
        (key, value), *_ = node.items()
        if key == "Ref":
            return f"<{value}>"
        if key == "Fn::GetAtt":
            parts = value if isinstance(value, list) else value.split(".", 1)
            return f"<{parts[0]}.{parts[1]}>"
        if key == "Fn::Join":
            return str(value[0]).join(label(part) for part in value[1])
        if key == "Fn::Sub":
            return str(value if isinstance(value, str) else value[0])
    return json.dumps(node, sort_keys=True)
