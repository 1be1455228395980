"""A trusted profile policy's rule: what the provider sends, what IAM refuses (sandbox/ibm/cos_access.py).

The shapes follow the provider's ``flex.GeneratePolicyRule`` (v2.5.0) and the IAM Policy Management
API's rule models; docs/sandbox.md cites both.
"""

from __future__ import annotations

import pytest

from sandbox.ibm.cos_access import rule_problems, terraform_rule
from tests.conftest import REPO

PATH = {"key": "{{resource.attributes.path}}", "operator": "stringMatch", "value": ["runs/a/*"]}
PREFIX = {"key": "{{resource.attributes.prefix}}", "operator": "stringMatch", "value": ["runs/a/*"]}


def test_one_block_is_sent_flat_and_is_a_valid_single_attribute_rule():
    rule = terraform_rule({"rule_conditions": [PATH]})
    assert rule == PATH  # the provider sends {key, operator, value}, no "conditions" wrapper
    assert rule_problems(rule) == []


def test_several_blocks_are_wrapped_under_rule_operator():
    rule = terraform_rule({"rule_conditions": [PATH, PREFIX], "rule_operator": "or"})
    assert rule == {"operator": "or", "conditions": [PATH, PREFIX]}
    assert rule_problems(rule) == []


def test_several_blocks_without_rule_operator_are_refused():
    """rule_operator has no default in the provider's schema: it sends an empty operator."""
    problems = rule_problems(terraform_rule({"rule_conditions": [PATH, PREFIX]}))
    assert problems and "rule_operator" in problems[0]


def test_one_block_with_nested_conditions_loses_them_and_is_refused():
    block = {"operator": "and", "conditions": [PATH, PREFIX]}
    rule = terraform_rule({"rule_conditions": [block]})
    assert rule == {"operator": "and"}
    assert "key, value missing" in rule_problems(rule)[0]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({**PATH, "operator": "like"}, "not an IAM rule operator"),
        ({"key": PATH["key"], "operator": "stringMatch"}, "value missing"),
        ({"operator": "xor", "conditions": [PATH]}, "'and' or 'or'"),
        ({"operator": "and", "conditions": []}, "at least one condition"),
    ],
)
def test_malformed_rules_are_refused(rule, expected):
    assert any(expected in p for p in rule_problems(rule))


def test_the_projects_policy_is_accepted():
    """terraform/main.tf's one path condition, as the provider sends it."""
    text = (REPO / "terraform" / "main.tf").read_text()
    assert 'key      = "{{resource.attributes.path}}"' in text and "rule_operator" not in text
    rule = terraform_rule({"rule_conditions": [{**PATH, "value": ["gpu-runs/x/*"]}]})
    assert rule_problems(rule) == []


def test_an_apply_with_a_refused_rule_creates_no_policy(sandbox_factory, make_client):
    box = sandbox_factory(rate_limit_per_min=None, resource_delay_s=0)
    client = make_client(box)
    main_tf = (
        'resource "ibm_iam_trusted_profile" "tp" {\n  name = "bad-rule-tp"\n}\n'
        'resource "ibm_iam_trusted_profile_policy" "p" {\n'
        "  iam_id = ibm_iam_trusted_profile.tp.iam_id\n"
        '  roles  = ["Object Reader"]\n'
        '  resources {\n    service = "cloud-object-storage"\n  }\n'
        "  rule_conditions {\n"
        '    operator = "and"\n'
        "    conditions {\n"
        '      key      = "{{resource.attributes.path}}"\n'
        '      operator = "stringMatch"\n'
        '      value    = ["runs/a/*"]\n'
        "    }\n"
        "  }\n"
        '  pattern = "attribute-based-condition:resource:literal-and-wildcard"\n'
        "}\n"
    )
    ws = client.ready(files={"main.tf": main_tf}, name="airflow-bad-rule")
    act = client.wait(ws["id"], client.run(ws["id"], "apply"))
    assert act["status"] == "FAILED"
    assert "invalid policy rule" in act["templates"][0]["log_summary"]["error"]
    assert box.inventory.list(kind="ibm_iam_trusted_profile_policy") == []
