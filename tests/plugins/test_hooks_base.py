"""Connection parsing, error mapping and the retry loop (no network: pure functions)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import requests

from ibm_cloud_airflow.hooks.base import (
    CosConnectionConfig,
    IbmCloudApiError,
    IbmCloudConfigError,
    IbmCloudConnectionConfig,
    IbmCloudNotFoundError,
    IbmCloudPermanentError,
    RetryPolicy,
    call_with_retries,
    map_api_error,
    validate_cos_connection,
    validate_ibm_connection,
)

from .conftest import CANARY_API_KEY, CANARY_HMAC_SECRET, api_error


def conn(password="k-123", login=None, conn_id="ibm_cloud_default", **extra):  # noqa: S107
    return SimpleNamespace(conn_id=conn_id, password=password, login=login, extra_dejson=extra)


class TestIbmCloudConnection:
    def test_defaults_from_region(self):
        cfg = IbmCloudConnectionConfig.from_connection(conn(region="eu-de"))
        assert cfg.iam_url == "https://iam.cloud.ibm.com"
        assert cfg.schematics_url == "https://eu-de.schematics.cloud.ibm.com"
        assert cfg.vpc_url == "https://eu-de.iaas.cloud.ibm.com/v1"
        assert cfg.resource_group is None

    @pytest.mark.parametrize("region", ["us-south", "us-east", "eu-gb", "eu-de", "ca-tor", "ca-mon"])
    def test_schematics_regions(self, region):
        cfg = IbmCloudConnectionConfig.from_connection(conn(region=region))
        assert cfg.schematics_url == f"https://{region}.schematics.cloud.ibm.com"

    def test_overrides(self):
        cfg = IbmCloudConnectionConfig.from_connection(
            conn(
                region="us-south",
                resource_group="rg1",
                iam_url="http://127.0.0.1:1/identity/token",
                schematics_url="http://127.0.0.1:2/",
                vpc_url="http://127.0.0.1:3/v1",
            )
        )
        assert cfg.iam_url == "http://127.0.0.1:1"
        assert cfg.schematics_url == "http://127.0.0.1:2"
        assert cfg.vpc_url == "http://127.0.0.1:3/v1"
        assert cfg.resource_group == "rg1"

    def test_api_key_not_in_repr_or_describe(self):
        cfg = IbmCloudConnectionConfig.from_connection(conn(password=CANARY_API_KEY, region="us-south"))
        assert CANARY_API_KEY not in repr(cfg)
        assert CANARY_API_KEY not in json.dumps(cfg.describe())

    @pytest.mark.parametrize(
        ("kwargs", "fragment"),
        [
            ({"region": None}, "extra 'region' is missing; set it to e.g. 'us-south'"),
            ({"region": "Dallas"}, "extra 'region' = 'Dallas' is not an IBM Cloud region"),
            ({"region": "jp-tok"}, "set extra 'schematics_url'"),
            ({"region": "us-south", "iam_url": "ftp://x"}, "extra 'iam_url'"),
            ({"region": "us-south", "schematics_url": "nohost"}, "extra 'schematics_url'"),
            ({"region": "us-south", "password": ""}, "password (IBM Cloud API key) is missing"),
            ({"region": "us-south", "password": '"quoted"'}, "quotes or braces"),
        ],
    )
    def test_bad_fields_name_the_field(self, kwargs, fragment):
        password = kwargs.pop("password", "k-123")
        with pytest.raises(IbmCloudConfigError) as err:
            IbmCloudConnectionConfig.from_connection(conn(password=password, **kwargs))
        assert fragment in str(err.value)
        assert "Connection 'ibm_cloud_default'" in str(err.value)

    def test_validate_helpers_read_env_connections(self, ibm_env):
        summary = validate_ibm_connection()
        assert summary["region"] == "us-south"
        assert CANARY_API_KEY not in json.dumps(summary)
        cos = validate_cos_connection()
        assert cos["auth_type"] == "hmac"
        assert CANARY_HMAC_SECRET not in json.dumps(cos)

    def test_missing_connection_says_how_to_define_it(self, monkeypatch):
        monkeypatch.delenv("AIRFLOW_CONN_NOPE", raising=False)
        with pytest.raises(IbmCloudConfigError, match="AIRFLOW_CONN_NOPE"):
            validate_ibm_connection("nope")


class TestCosConnection:
    def test_hmac(self):
        cfg = CosConnectionConfig.from_connection(
            conn(login="id", password="secret", conn_id="c", endpoint_url="http://127.0.0.1:9000")
        )
        assert (cfg.auth_type, cfg.access_key_id, cfg.secret_access_key) == ("hmac", "id", "secret")
        assert cfg.vm_endpoint_url == "http://127.0.0.1:9000"
        assert "secret" not in repr(cfg)

    def test_iam(self):
        cfg = CosConnectionConfig.from_connection(
            conn(
                password="key",
                conn_id="c",
                endpoint_url="https://s3.x",
                auth_type="iam",
                vm_endpoint_url="https://d",
            )
        )
        assert (cfg.auth_type, cfg.api_key, cfg.vm_endpoint_url) == ("iam", "key", "https://d")

    @pytest.mark.parametrize(
        ("login", "password", "extra", "fragment"),
        [
            ("id", "s", {}, "extra 'endpoint_url' is missing"),
            (None, "s", {"endpoint_url": "https://s3.x"}, "login (HMAC access_key_id) is missing"),
            ("id", None, {"endpoint_url": "https://s3.x"}, "password (HMAC secret_access_key) is missing"),
            (
                None,
                None,
                {"endpoint_url": "https://s3.x", "auth_type": "iam"},
                "password (IBM Cloud API key)",
            ),
            ("id", "s", {"endpoint_url": "https://s3.x", "auth_type": "sigv2"}, "extra 'auth_type'"),
        ],
    )
    def test_errors(self, login, password, extra, fragment):
        with pytest.raises(IbmCloudConfigError, match="Connection 'c'") as err:
            CosConnectionConfig.from_connection(conn(login=login, password=password, conn_id="c", **extra))
        assert fragment in str(err.value)


class TestErrorMapping:
    def test_codes(self):
        assert isinstance(map_api_error(api_error(404), "x"), IbmCloudNotFoundError)
        err = map_api_error(api_error(403, "no access"), "get ws", "ibm_cloud_default")
        assert isinstance(err, IbmCloudPermanentError)
        assert "no access" in str(err) and "ibm_cloud_default" in str(err)
        assert isinstance(map_api_error(api_error(400), "x"), IbmCloudPermanentError)
        assert isinstance(map_api_error(api_error(409), "x"), IbmCloudApiError)
        assert isinstance(map_api_error(api_error(503), "x"), IbmCloudApiError)
        iam = map_api_error(
            api_error(400, "Provided API key could not be found.", url="https://iam/identity/token"), "x"
        )
        assert isinstance(iam, IbmCloudPermanentError) and "IAM rejected the API key" in str(iam)
        net = map_api_error(requests.ConnectionError("refused"), "x", "c")
        assert isinstance(net, IbmCloudApiError) and "endpoint URLs" in str(net)


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s

    def __call__(self):
        return self.now


def flaky(*outcomes):
    it = iter(outcomes)

    def f():
        o = next(it)
        if isinstance(o, BaseException):
            raise o
        return o

    return f


class TestRetries:
    def test_retry_after_is_honoured(self):
        clock = Clock()
        f = flaky(api_error(429, headers={"Retry-After": "7"}), "ok")
        assert call_with_retries(f, what="x", policy=RetryPolicy(), sleep=clock.sleep, clock=clock) == "ok"
        assert clock.sleeps == [7.0]

    def test_5xx_backs_off_then_gives_up(self):
        clock = Clock()
        f = flaky(*[api_error(503)] * 10)
        with pytest.raises(IbmCloudApiError, match="HTTP 503"):
            call_with_retries(f, what="x", policy=RetryPolicy(max_attempts=4), sleep=clock.sleep, clock=clock)
        assert len(clock.sleeps) == 3
        assert clock.sleeps[2] > clock.sleeps[0] * 0.9

    def test_total_time_cap(self):
        clock = Clock()
        f = flaky(*[api_error(429, headers={"Retry-After": "25"})] * 10)
        with pytest.raises(IbmCloudApiError):
            call_with_retries(f, what="x", policy=RetryPolicy(max_total_s=60), sleep=clock.sleep, clock=clock)
        assert sum(clock.sleeps) <= 60

    def test_4xx_is_not_retried(self):
        clock = Clock()
        with pytest.raises(IbmCloudPermanentError):
            call_with_retries(
                flaky(api_error(400), "ok"), what="x", policy=RetryPolicy(), sleep=clock.sleep, clock=clock
            )
        assert clock.sleeps == []

    def test_409_waits_when_asked_and_is_bounded(self):
        clock = Clock()
        policy = RetryPolicy(lock_wait_s=30, lock_poll_s=10)
        f = flaky(api_error(409), api_error(409), "ok")
        assert (
            call_with_retries(f, what="x", policy=policy, wait_on_lock=True, sleep=clock.sleep, clock=clock)
            == "ok"
        )
        assert clock.sleeps == [10, 10]
        with pytest.raises(IbmCloudApiError, match="stayed locked"):
            call_with_retries(
                flaky(*[api_error(409)] * 10),
                what="x",
                policy=policy,
                wait_on_lock=True,
                sleep=clock.sleep,
                clock=clock,
            )
        with pytest.raises(IbmCloudApiError, match="locked"):
            call_with_retries(flaky(api_error(409)), what="x", policy=policy, sleep=clock.sleep, clock=clock)

    def test_recover_prevents_second_submission(self):
        clock = Clock()
        calls = []

        def submit():
            calls.append(1)
            raise api_error(502)

        result = call_with_retries(
            submit,
            what="x",
            policy=RetryPolicy(),
            recover=lambda exc: "job-1",
            sleep=clock.sleep,
            clock=clock,
        )
        assert result == "job-1" and len(calls) == 1

    def test_recover_not_consulted_after_429(self):
        clock = Clock()
        seen = []
        f = flaky(api_error(429), "sent")
        result = call_with_retries(
            f,
            what="x",
            policy=RetryPolicy(),
            recover=lambda e: seen.append(e),
            sleep=clock.sleep,
            clock=clock,
        )
        assert result == "sent" and seen == []
