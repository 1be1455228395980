"""COS authorisation with IBM's semantics: the role->action table, S3 request->action, policy checks.

**Source of the table** (read 2026-12-02): IBM Cloud docs, "IAM roles and actions"
(``ibm-cloud-docs/account`` ``iam-service-roles-actions.md``, the stored version says lastupdated
2023-06-17; section *Cloud Object Storage*, "Service actions - Cloud Object Storage": each action
with the roles that include it), which the
COS page ``ibm-cloud-docs/cloud-object-storage`` ``iam.md`` (lastupdated 2026-07-09, "Identity and
Access Management actions": the condition attribute each action supports) links to. Only the
actions an S3 request of this project can map to are listed; any other request is refused.

**Conditions** (``assign-access-indvobjects.md``, "Assigning access to objects within a bucket
using IAM access conditions"): object actions carry the attribute ``path`` (the key), listing
actions ``prefix`` and ``delimiter``, and the remaining actions none. A policy's rule must evaluate
true for the request, and an attribute the rule names but the request lacks makes that condition
false (except ``stringExists = false``). ``stringMatch`` wildcards: ``*`` any run, ``?`` one
character (``ibm-cloud-docs/account`` ``wildcard.md``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

SERVICE = "cloud-object-storage"
PREFIX = f"{SERVICE}."

_W, _M, _R, _CR, _OR, _OW = "Writer", "Manager", "Reader", "Content Reader", "Object Reader", "Object Writer"

#: action -> the COS service roles that include it (IBM's table; see the module docstring).
ACTION_ROLES: dict[str, frozenset[str]] = {
    f"{PREFIX}{action}": frozenset(roles)
    for action, roles in {
        "account.get_account_buckets": (_M, _R, _W),
        "bucket.put_bucket": (_M, _W),
        "bucket.delete_bucket": (_M, _W),
        "bucket.get": (_CR, _M, _R, _W),
        "bucket.head": (_CR, _M, _R, _W),
        "bucket.get_versions": (_CR, _M, _R, _W),
        "bucket.get_uploads": (_M, _R, _W),
        "bucket.get_acl": (_M,),
        "bucket.put_acl": (_M,),
        "bucket.get_cors": (_M, _R, _W),
        "bucket.put_cors": (_M, _W),
        "bucket.delete_cors": (_M, _W),
        "bucket.get_versioning": (_M, _R, _W),
        "bucket.put_versioning": (_M, _W),
        "bucket.get_location": (_CR, _M, _R, _W),
        "bucket.get_lifecycle": (_M, _R, _W),
        "bucket.put_lifecycle": (_M, _W),
        "object.get": (_CR, _M, _OR, _R, _W),
        "object.head": (_CR, _M, _OR, _R, _W),
        "object.put": (_M, _OW, _W),
        "object.post_initiate_upload": (_M, _OW, _W),
        "object.put_part": (_M, _OW, _W),
        "object.post_complete_upload": (_M, _OW, _W),
        "object.get_uploads": (_M, _OW, _R, _W),
        "object.delete_upload": (_M, _OW, _W),
        "object.copy": (_M, _W),
        "object.get_acl": (_M,),
        "object.put_acl": (_M,),
        "object.delete": (_M, _W),
        "object.get_tagging": (_M, _R, _W),
        "object.put_tagging": (_M, _OW, _W),
        "object.delete_tagging": (_M, _OW, _W),
        "object.post_multi_delete": (_M, _W),
    }.items()
}

#: Every COS service role (the provider sends role names; IAM refuses names the service lacks).
SERVICE_ROLES = frozenset({_M, _W, _R, _CR, _OR, _OW})
#: Platform roles (no data access, but valid in a COS policy).
PLATFORM_ROLES = frozenset({"Viewer", "Editor", "Operator", "Administrator"})

_LIST_ACTIONS = {f"{PREFIX}bucket.get", f"{PREFIX}bucket.get_versions", f"{PREFIX}bucket.get_uploads"}
_BUCKET_SUBRESOURCES = {
    "GET": {
        "uploads": "bucket.get_uploads",
        "versions": "bucket.get_versions",
        "acl": "bucket.get_acl",
        "cors": "bucket.get_cors",
        "versioning": "bucket.get_versioning",
        "location": "bucket.get_location",
        "lifecycle": "bucket.get_lifecycle",
    },
    "PUT": {
        "acl": "bucket.put_acl",
        "cors": "bucket.put_cors",
        "versioning": "bucket.put_versioning",
        "lifecycle": "bucket.put_lifecycle",
    },
    "DELETE": {"cors": "bucket.delete_cors"},
    "POST": {"delete": "object.post_multi_delete"},
}

# Object requests: (method, query marker) in this order, then the plain method.
_OBJECT_SUBRESOURCES = {
    ("GET", "uploadId"): "object.get_uploads",
    ("GET", "tagging"): "object.get_tagging",
    ("GET", "acl"): "object.get_acl",
    ("PUT", "uploadId"): "object.put_part",
    ("PUT", "tagging"): "object.put_tagging",
    ("PUT", "acl"): "object.put_acl",
    ("POST", "uploads"): "object.post_initiate_upload",
    ("POST", "uploadId"): "object.post_complete_upload",
    ("DELETE", "uploadId"): "object.delete_upload",
    ("DELETE", "tagging"): "object.delete_tagging",
}
_BUCKET_ACTIONS = {
    "GET": "bucket.get",
    "HEAD": "bucket.head",
    "PUT": "bucket.put_bucket",
    "DELETE": "bucket.delete_bucket",
}
_OBJECT_ACTIONS = {"GET": "object.get", "HEAD": "object.head", "PUT": "object.put", "DELETE": "object.delete"}


@dataclass(frozen=True)
class CosRequest:
    """One S3 request as IAM sees it: the action, the bucket, and the condition attributes."""

    action: str
    bucket: str | None
    attributes: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        where = f"cos://{self.bucket}/{self.attributes.get('path', '')}" if self.bucket else "the instance"
        return f"{self.action} on {where}"


def classify(method: str, path: str, query_string: str, headers: Any) -> CosRequest:
    """Map a path-style S3 request (decoded ``/<bucket>/<key>``, raw query) to its IAM action."""
    method = method.upper()
    query = parse_qs(query_string, keep_blank_values=True)
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        return CosRequest(f"{PREFIX}account.get_account_buckets", None)
    if not key:
        for sub, action in _BUCKET_SUBRESOURCES.get(method, {}).items():
            if sub in query:
                return _with_list_attributes(CosRequest(f"{PREFIX}{action}", bucket), query)
        action = _BUCKET_ACTIONS.get(method, f"bucket.{method.lower()}")
        return _with_list_attributes(CosRequest(f"{PREFIX}{action}", bucket), query)
    for (verb, marker), name in _OBJECT_SUBRESOURCES.items():
        if verb == method and marker in query:
            action = name
            break
    else:
        action = _OBJECT_ACTIONS.get(method, f"object.{method.lower()}")
        if action == "object.put" and headers.get("x-amz-copy-source"):
            action = "object.copy"
    return CosRequest(f"{PREFIX}{action}", bucket, {"path": key})


def _with_list_attributes(request: CosRequest, query: dict[str, list[str]]) -> CosRequest:
    if request.action not in _LIST_ACTIONS:
        return request
    attributes = {"prefix": query.get("prefix", [""])[0]}
    if "delimiter" in query:
        attributes["delimiter"] = query["delimiter"][0]
    return CosRequest(request.action, request.bucket, attributes)


# -- policies --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """An IAM access policy on COS: who, which roles, on what, under which rule."""

    subject: str  # iam_id
    roles: frozenset[str]
    instance_guid: str | None = None  # None: every COS instance of the account
    bucket: str | None = None  # resource_type "bucket" + resource
    rule: dict[str, Any] | None = None  # {"key", "operator", "value"} or {"operator", "conditions": [...]}
    origin: str = ""

    def grants(self, request: CosRequest, instance_guid: str) -> bool:
        if self.instance_guid not in (None, "", instance_guid):
            return False
        if self.bucket is not None and request.bucket != self.bucket:
            return False
        if not self.roles & ACTION_ROLES.get(request.action, frozenset()):
            return False
        return self.rule is None or evaluate_rule(self.rule, request.attributes)


def evaluate_rule(rule: dict[str, Any], attributes: dict[str, str]) -> bool:
    """IAM's v2 rule: a condition, or ``and``/``or`` over nested conditions."""
    if "conditions" in rule and rule.get("conditions"):
        results = (evaluate_rule(c, attributes) for c in rule["conditions"])
        return all(results) if str(rule.get("operator", "and")).lower() == "and" else any(results)
    key = str(rule.get("key", ""))
    name = key.removeprefix("{{resource.attributes.").removesuffix("}}")
    values = rule.get("value")
    values = [str(v) for v in values] if isinstance(values, list) else [str(values)]
    operator = str(rule.get("operator", ""))
    present = name in attributes
    if operator == "stringExists":
        return present == (values[0].lower() == "true")
    if not present:
        return False
    actual = attributes[name]
    if operator in ("stringEquals", "stringEqualsAnyOf"):
        return actual in values
    if operator in ("stringMatch", "stringMatchAnyOf"):
        return any(_wildcard(v).fullmatch(actual) for v in values)
    return False  # an operator COS does not support never grants


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.S)


def policies_from_terraform(records: Iterable[dict[str, Any]]) -> list[Policy]:
    """The COS policies among ``ibm_iam_trusted_profile_policy`` inventory records (the engine's state).

    ``resources`` (v1 style) and ``rule_conditions`` + ``rule_operator`` (v2) are read as the
    provider sends them (``flex.GeneratePolicyRule``: one condition becomes the rule itself).
    """
    out = []
    for record in records:
        attrs = record.get("attrs") or {}
        iam_id = attrs.get("iam_id") or (f"iam-{attrs['profile_id']}" if attrs.get("profile_id") else "")
        for res in attrs.get("resources") or [{}]:
            if res.get("service") not in (None, SERVICE):
                continue
            bucket = res.get("resource") if res.get("resource_type") == "bucket" else None
            out.append(
                Policy(
                    subject=str(iam_id),
                    roles=frozenset(str(r) for r in attrs.get("roles") or []),
                    instance_guid=res.get("resource_instance_id") or None,
                    bucket=bucket or None,
                    rule=terraform_rule(attrs),
                    origin=f"{record.get('kind')} {record.get('id')}",
                )
            )
    return out


def terraform_rule(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The rule the provider sends for ``rule_conditions`` blocks, as ``flex.GeneratePolicyRule`` builds it.

    One block without nested ``conditions`` becomes the rule itself (IAM's single-attribute rule);
    several blocks become ``{"operator": rule_operator, "conditions": [...]}``. One block *with*
    nested conditions keeps only its operator: GeneratePolicyRule copies key, operator and value of
    the single condition, and a nested one has no key or value (v2.5.0, ibm/flex/structures.go).
    """
    conditions = attrs.get("rule_conditions") or []
    if not conditions:
        return None
    rules = []
    for cond in conditions:
        nested = cond.get("conditions") or []
        if nested:
            rules.append({"operator": cond.get("operator") or "", "conditions": list(nested)})
        else:
            rules.append({name: cond.get(name) for name in ("key", "operator", "value")})
    if len(rules) == 1:
        return {name: rules[0].get(name) for name in ("key", "operator", "value") if rules[0].get(name)}
    return {"operator": attrs.get("rule_operator") or "", "conditions": rules}


#: The operators of IAM's single-attribute rule (``V2PolicyRuleRuleAttribute.Operator``, the IAM
#: Policy Management API's model in IBM/platform-services-java-sdk).
RULE_ATTRIBUTE_OPERATORS = frozenset(
    {
        "stringEquals", "stringExists", "stringEqualsAnyOf", "stringMatchAnyOf", "stringMatch",
        "timeLessThan", "timeLessThanOrEquals", "timeGreaterThan", "timeGreaterThanOrEquals",
        "dateLessThan", "dateLessThanOrEquals", "dateGreaterThan", "dateGreaterThanOrEquals",
        "dateTimeLessThan", "dateTimeLessThanOrEquals", "dateTimeGreaterThan",
        "dateTimeGreaterThanOrEquals", "dayOfWeekEquals", "dayOfWeekAnyOf",
    }
)  # fmt: skip
#: The operators over nested conditions (``V2PolicyRuleRuleWithNestedConditions``: ``and``, ``or``).
RULE_NESTED_OPERATORS = frozenset({"and", "or"})


def rule_problems(rule: dict[str, Any] | None, depth: int = 0) -> list[str]:
    """Why IAM would refuse ``rule`` (a policy's v2 rule); [] when it is well formed.

    IAM's v2 rule is either one attribute (``key``, ``operator``, ``value``, all required) or
    ``operator`` (``and``/``or``) over ``conditions``, whose entries may nest once more (the API's
    ``V2PolicyRule``/``NestedCondition`` models).
    """
    if rule is None:
        return []
    if "conditions" in rule:
        problems = []
        if rule.get("operator") not in RULE_NESTED_OPERATORS:
            problems.append(
                f"a rule over conditions needs operator 'and' or 'or', not {rule.get('operator')!r}"
                + (" (set rule_operator)" if depth == 0 else "")
            )
        if not rule.get("conditions"):
            problems.append("a rule over conditions needs at least one condition")
        if depth >= 2:
            problems.append("conditions nest at most two levels")
        for cond in rule.get("conditions") or []:
            problems.extend(rule_problems(cond, depth + 1))
        return problems
    missing = [name for name in ("key", "operator", "value") if rule.get(name) in (None, "", [])]
    if missing:
        return [
            f"a rule condition needs key, operator and value; {', '.join(missing)} missing"
            + (
                " (one rule_conditions block with nested conditions sends only its operator)"
                if depth == 0
                else ""
            )
        ]
    if rule["operator"] not in RULE_ATTRIBUTE_OPERATORS:
        return [f"operator {rule['operator']!r} is not an IAM rule operator"]
    return []


def invalid_roles(roles: Iterable[str]) -> list[str]:
    """Role names a COS policy cannot have (IAM refuses the policy)."""
    return sorted(set(roles) - SERVICE_ROLES - PLATFORM_ROLES)


class CosAuthorizer:
    """Decides each COS request: the caller's policies (API key, HMAC credential, trusted profiles).

    ``user_policies`` returns the API-key identity's COS policies now (a fault may remove them);
    trusted-profile policies are read from the inventory records the Terraform engine creates, so
    a policy exists exactly while its Terraform resource does.
    """

    def __init__(
        self,
        *,
        instance_guid: str,
        hmac_subject: str,
        hmac_role: str,
        user_policies: Any,
        inventory: Any,
    ) -> None:
        if hmac_role not in SERVICE_ROLES:
            raise ValueError(f"cos_hmac_role must be one of {sorted(SERVICE_ROLES)}, not {hmac_role!r}")
        self.instance_guid = instance_guid
        self.hmac_policy = Policy(
            subject=hmac_subject, roles=frozenset({hmac_role}), instance_guid=instance_guid, origin="HMAC"
        )
        self.user_policies = user_policies
        self.inventory = inventory

    def policies_of(self, iam_id: str) -> list[Policy]:
        if iam_id == self.hmac_policy.subject:
            return [self.hmac_policy]
        found = [p for p in self.user_policies() if p.subject == iam_id]
        records = self.inventory.list(kind="ibm_iam_trusted_profile_policy")
        found += [p for p in policies_from_terraform(records) if p.subject == iam_id]
        return found

    def allows(self, iam_id: str, request: CosRequest) -> bool:
        return any(p.grants(request, self.instance_guid) for p in self.policies_of(iam_id))
