"""The S3 policy is least privilege, and the trust policy lets in only the Ray pods' service
account. The placeholders are filled with the values the manifests actually use (the nightly
CronJob's input root, the nightly spec's output), the result is validated with moto's IAM
policy grammar, then evaluated against the requests a nightly run makes and against requests
it must refuse. The evaluator below implements the parts of IAM these policies use: Allow
statements, `*`/`?` wildcards in actions and resources, and StringLike/StringEquals
conditions, where a condition on a key the request lacks does not hold."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
IAM = REPO / "infra" / "iam"
KUBERAY = REPO / "infra" / "kuberay"
PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")
INPUT_ACTIONS = {"s3:GetObject", "s3:ListBucket"}
OUTPUT_ACTIONS = {"s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:ListBucket"}
OIDC = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"

Obj = dict[str, Any]


def k8s(kind: str, name: str | None = None) -> Obj:
    for path in sorted(KUBERAY.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind and name in (None, doc["metadata"]["name"]):
                return dict(doc)
    raise AssertionError(f"no {kind} {name}")


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


def deployed_values() -> dict[str, str]:
    """The placeholders' values as the manifests use them."""
    cron = k8s("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    root = next(e["value"] for e in cron["env"] if e["name"] == "TIERLINE_INPUT_ROOT")
    spec = yaml.safe_load((KUBERAY / "nightly" / "nightly-tickets.yaml").read_text())
    arn = k8s("ServiceAccount", "tierline")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    in_bucket, in_prefix = split_s3(root)
    out_bucket, out_prefix = split_s3(spec["output"]["uri"])
    return {
        "INPUT_BUCKET": in_bucket,
        "INPUT_PREFIX": in_prefix,
        "OUTPUT_BUCKET": out_bucket,
        "OUTPUT_PREFIX": out_prefix,
        "AWS_ACCOUNT_ID": arn.split(":")[4],
        "OIDC_PROVIDER": OIDC,
    }


def filled(name: str) -> str:
    values = deployed_values()
    return PLACEHOLDER.sub(lambda m: values[m[1]], (IAM / name).read_text())


def statements(doc: Obj) -> list[Obj]:
    st = doc["Statement"]
    return st if isinstance(st, list) else [st]


def as_list(v: str | list[str]) -> list[str]:
    return [v] if isinstance(v, str) else v


def _like(pattern: str, value: str, case: bool = True) -> bool:
    regex = fnmatch.translate(pattern).replace("(?s:", "(?s:" if case else "(?si:", 1)
    return re.match(regex, value) is not None  # IAM: * and ? only, no [] classes


def allowed(policy: Obj, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    context = context or {}
    for st in statements(policy):
        assert st["Effect"] == "Allow", "the evaluator handles Allow only"
        if not any(_like(a, action, case=False) for a in as_list(st["Action"])):
            continue
        if not any(_like(r, resource) for r in as_list(st["Resource"])):
            continue
        ok = True
        for op, conds in st.get("Condition", {}).items():
            assert op in {"StringLike", "StringEquals"}, op
            for key, want in conds.items():
                have = context.get(key)
                match = (lambda w, h: _like(w, h)) if op == "StringLike" else str.__eq__
                ok &= have is not None and any(match(w, have) for w in as_list(want))
        if ok:
            return True
    return False


# --- the files --------------------------------------------------------------------------


def test_placeholders_are_the_documented_ones() -> None:
    used = set(PLACEHOLDER.findall((IAM / "s3-policy.json").read_text()))
    used |= set(PLACEHOLDER.findall((IAM / "irsa-trust-policy.json").read_text()))
    documented = set(re.findall(r"^\| `\$\{([A-Z_]+)\}` \|", (IAM / "README.md").read_text(), re.M))
    assert used == documented == set(deployed_values())


def test_deployed_prefixes_end_with_a_slash() -> None:
    v = deployed_values()
    for key in ("INPUT_PREFIX", "OUTPUT_PREFIX"):
        assert v[key].endswith("/") and not v[key].startswith("/"), (key, v[key])


def test_filled_policies_are_valid_iam() -> None:
    from moto.iam.policy_validation import (
        IAMPolicyDocumentValidator,
        IAMTrustPolicyDocumentValidator,
    )

    for name in ("s3-policy.json", "irsa-trust-policy.json"):
        assert "${" not in filled(name), name
    IAMPolicyDocumentValidator(filled("s3-policy.json")).validate()
    IAMTrustPolicyDocumentValidator(filled("irsa-trust-policy.json")).validate()


def test_policy_grants_only_the_listed_actions() -> None:
    policy = json.loads((IAM / "s3-policy.json").read_text())
    assert policy["Version"] == "2012-10-17"
    grants: dict[str, set[str]] = {"INPUT": set(), "OUTPUT": set()}
    for st in statements(policy):
        assert st["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "Principal"} & set(st), st.get("Sid")
        actions, resources = as_list(st["Action"]), as_list(st["Resource"])
        for action in actions:
            assert "*" not in action and "?" not in action, f"{action}: no wildcards"
        for resource in resources:
            assert resource != "*" and resource.startswith("arn:aws:s3:::${"), resource
            assert "*" not in resource.split("/", 1)[0], f"{resource}: bucket must be named"
            side = "INPUT" if "${INPUT_BUCKET}" in resource else "OUTPUT"
            assert f"${{{side}_BUCKET}}" in resource, resource
            if "/" in resource:  # objects: only under the prefix
                assert resource.endswith(f"/${{{side}_PREFIX}}*"), resource
                assert "s3:ListBucket" not in actions
            else:  # the bucket: listing, only with a prefix under ours
                assert actions == ["s3:ListBucket"], st.get("Sid")
                prefix = f"${{{side}_PREFIX}}"
                want = {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}}
                assert st.get("Condition") == want, st.get("Sid")
            grants[side] |= set(actions)
    assert grants == {"INPUT": INPUT_ACTIONS, "OUTPUT": OUTPUT_ACTIONS}


# --- what a nightly run may and may not do ------------------------------------------------

DAY = "2026-11-27"


def _cases() -> list[tuple[str, str, str, dict[str, str], bool]]:
    v = deployed_values()
    ib, ip, ob, op = v["INPUT_BUCKET"], v["INPUT_PREFIX"], v["OUTPUT_BUCKET"], v["OUTPUT_PREFIX"]
    shard = f"arn:aws:s3:::{ib}/{ip}{DAY}/part-00000.parquet"
    unit = f"arn:aws:s3:::{ob}/{op}nightly-tickets-0a1b2c3d/results/unit-00000.parquet"
    commit = f"arn:aws:s3:::{ob}/{op}nightly-tickets-0a1b2c3d/_commits/unit-00000.json"
    sibling = f"arn:aws:s3:::{ib}/{ip.rstrip('/')}-archive/{DAY}/part-00000.parquet"
    return [
        ("plan lists the day's shards", "s3:ListBucket", f"arn:aws:s3:::{ib}",
         {"s3:prefix": f"{ip}{DAY}/"}, True),
        ("workers read a shard", "s3:GetObject", shard, {}, True),
        ("resume lists commits", "s3:ListBucket", f"arn:aws:s3:::{ob}",
         {"s3:prefix": f"{op}nightly-tickets-0a1b2c3d/_commits/"}, True),
        ("resume reads a commit", "s3:GetObject", commit, {}, True),
        ("a unit is written", "s3:PutObject", unit, {}, True),
        ("a commit is written", "s3:PutObject", commit, {}, True),
        ("an old generation is deleted", "s3:DeleteObject", unit, {}, True),
        ("action names are case-insensitive", "S3:getobject", shard, {}, True),
        ("no writing the input", "s3:PutObject", shard, {}, False),
        ("no deleting the input", "s3:DeleteObject", shard, {}, False),
        ("no listing the whole bucket", "s3:ListBucket", f"arn:aws:s3:::{ob}", {}, False),
        ("no listing elsewhere", "s3:ListBucket", f"arn:aws:s3:::{ob}", {"s3:prefix": "hr/"},
         False),
        ("no reading elsewhere in the bucket", "s3:GetObject", f"arn:aws:s3:::{ib}/hr/pay.csv",
         {}, False),
        ("a prefix is not a string prefix", "s3:GetObject", sibling, {}, False),
        ("no other bucket", "s3:GetObject", f"arn:aws:s3:::other-bucket/{ip}{DAY}/x", {}, False),
        ("no bucket policy changes", "s3:PutBucketPolicy", f"arn:aws:s3:::{ob}", {}, False),
        ("no deleting the bucket", "s3:DeleteBucket", f"arn:aws:s3:::{ob}", {}, False),
        ("no other services", "dynamodb:Scan", "arn:aws:dynamodb:us-east-1:1:table/t", {},
         False),
    ]  # fmt: skip


@pytest.mark.parametrize(("why", "action", "resource", "context", "expect"), _cases())
def test_access(
    why: str, action: str, resource: str, context: dict[str, str], expect: bool
) -> None:
    policy = json.loads(filled("s3-policy.json"))
    assert allowed(policy, action, resource, context) is expect, why


def test_evaluator_sees_wildcards_and_conditions() -> None:
    p = {"Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/p/*",
                        "Condition": {"StringEquals": {"k": "v"}}}]}  # fmt: skip
    assert allowed(p, "s3:GetObject", "arn:aws:s3:::b/p/x", {"k": "v"})
    assert not allowed(p, "s3:GetObject", "arn:aws:s3:::b/p/x", {"k": "w"})
    assert not allowed(p, "s3:GetObject", "arn:aws:s3:::b/p/x")
    assert not allowed(p, "s3:GetObject", "arn:aws:s3:::b/q/x", {"k": "v"})


# --- who may assume the role -----------------------------------------------------------------


def test_trust_policy_admits_only_the_ray_pods() -> None:
    trust = json.loads(filled("irsa-trust-policy.json"))
    (st,) = statements(trust)
    v = deployed_values()
    assert st["Effect"] == "Allow" and st["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert st["Principal"] == {
        "Federated": f"arn:aws:iam::{v['AWS_ACCOUNT_ID']}:oidc-provider/{OIDC}"
    }
    sa = k8s("ServiceAccount", "tierline")["metadata"]
    assert st["Condition"] == {
        "StringEquals": {
            f"{OIDC}:sub": f"system:serviceaccount:{sa['namespace']}:{sa['name']}",
            f"{OIDC}:aud": "sts.amazonaws.com",
        }
    }
