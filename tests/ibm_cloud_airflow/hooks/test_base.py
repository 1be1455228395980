"""Connection parsing, error mapping and the retry rules (no network: pure functions)."""

from __future__ import annotations

import json
import random
import time
from email.utils import formatdate
from types import SimpleNamespace

import pytest
import requests

from ibm_cloud_airflow.exceptions import (
    IbmCloudApiError,
    IbmCloudConfigError,
    IbmCloudNotFoundError,
    IbmCloudPermanentError,
)
from ibm_cloud_airflow.hooks.base import (
    CosConnectionConfig,
    IbmCloudConnectionConfig,
    RetryPolicy,
    call_with_retries,
    map_api_error,
)
from ibm_cloud_airflow.hooks.cos import CosHook
from ibm_cloud_airflow.hooks.schematics import SchematicsHook

from ..conftest import CANARY_API_KEY, CANARY_HMAC_SECRET, api_error


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

    def test_hooks_validate_env_connections(self, ibm_env):
        summary = SchematicsHook().validate()
        assert summary["region"] == "us-south"
        assert CANARY_API_KEY not in json.dumps(summary)
        cos = CosHook().validate()
        assert cos["auth_type"] == "hmac"
        assert CANARY_HMAC_SECRET not in json.dumps(cos)

    def test_missing_connection_says_how_to_define_it(self, monkeypatch):
        monkeypatch.delenv("AIRFLOW_CONN_NOPE", raising=False)
        with pytest.raises(IbmCloudConfigError, match="AIRFLOW_CONN_NOPE"):
            SchematicsHook("nope").validate()


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
    """Time that only ``sleep`` moves; the newest Clock is what ``time.monotonic`` (tenacity) reads."""

    current: Clock | None = None

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []
        Clock.current = self

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s


@pytest.fixture(autouse=True)
def monotonic_from_the_clock(monkeypatch):
    real = time.monotonic
    Clock.current = None
    monkeypatch.setattr(time, "monotonic", lambda: Clock.current.now if Clock.current else real())
    yield
    Clock.current = None


def flaky(*outcomes):
    it = iter(outcomes)

    def f():
        o = next(it)
        if isinstance(o, BaseException):
            raise o
        return o

    return f


def counting(f):
    """``f`` that counts its calls in ``.calls``."""

    def g():
        g.calls += 1
        return f()

    g.calls = 0
    return g


@pytest.fixture
def jitter(monkeypatch):
    """Pin the jitter: ``jitter("high")`` takes the whole backoff, ``jitter("low")`` half of it."""

    def pin(end: str) -> None:
        monkeypatch.setattr(random, "uniform", lambda a, b: b if end == "high" else a)

    return pin


class TestRetries:
    def test_retry_after_is_honoured(self):
        clock = Clock()
        f = flaky(api_error(429, headers={"Retry-After": "7"}), "ok")
        assert call_with_retries(f, what="x", policy=RetryPolicy(), sleep=clock.sleep) == "ok"
        assert clock.sleeps == [7.0]

    def test_retry_after_as_an_http_date(self):
        clock = Clock()
        when = formatdate(time.time() + 30, usegmt=True)
        f = flaky(api_error(503, headers={"Retry-After": when}), "ok")
        assert call_with_retries(f, what="x", policy=RetryPolicy(), sleep=clock.sleep) == "ok"
        assert len(clock.sleeps) == 1 and 28 <= clock.sleeps[0] <= 30

    @pytest.mark.parametrize(("header", "expected"), [("1000", 120.0), ("in an hour", 120.0), ("0", 0.0)])
    def test_retry_after_is_capped(self, header, expected):
        if header == "in an hour":  # computed when the test runs, not at collection
            header = formatdate(time.time() + 3600, usegmt=True)
        clock = Clock()
        f = flaky(api_error(429, headers={"Retry-After": header}), "ok")
        assert call_with_retries(f, what="x", policy=RetryPolicy(), sleep=clock.sleep) == "ok"
        assert clock.sleeps == [expected]

    def test_a_date_in_the_past_retries_at_once(self):
        clock = Clock()
        f = flaky(api_error(429, headers={"Retry-After": "Mon, 01 Jan 2001 00:00:00 GMT"}), "ok")
        assert call_with_retries(f, what="x", policy=RetryPolicy(), sleep=clock.sleep) == "ok"
        assert clock.sleeps == [0.0]

    def test_backoff_doubles_up_to_its_cap(self, jitter):
        policy = RetryPolicy(max_attempts=6, base_delay_s=1, max_delay_s=4)
        for end, expected in (("high", [1, 2, 4, 4, 4]), ("low", [0.5, 1, 2, 2, 2])):
            jitter(end)
            clock = Clock()
            with pytest.raises(IbmCloudApiError):
                call_with_retries(flaky(*[api_error(500)] * 6), what="x", policy=policy, sleep=clock.sleep)
            assert clock.sleeps == expected, end

    def test_backoff_is_jittered(self):
        policy = RetryPolicy(max_attempts=4, base_delay_s=1, max_delay_s=30)
        runs = []
        for _ in range(5):
            clock = Clock()
            with pytest.raises(IbmCloudApiError):
                call_with_retries(flaky(*[api_error(502)] * 4), what="x", policy=policy, sleep=clock.sleep)
            for n, slept in enumerate(clock.sleeps, start=1):
                assert 2 ** (n - 1) / 2 <= slept <= 2 ** (n - 1)
            runs.append(tuple(clock.sleeps))
        assert len(set(runs)) > 1  # five identical runs of three random waits: not jitter

    def test_5xx_backs_off_then_gives_up(self):
        clock = Clock()
        f = counting(flaky(*[api_error(503)] * 10))
        with pytest.raises(IbmCloudApiError, match="HTTP 503") as err:
            call_with_retries(f, what="x", policy=RetryPolicy(max_attempts=4), sleep=clock.sleep)
        assert f.calls == 4 and len(clock.sleeps) == 3
        assert clock.sleeps[2] > clock.sleeps[0] * 0.9
        assert "retries were exhausted" in str(err.value)
        assert getattr(err.value.__cause__, "status_code", None) == 503  # the last error, mapped

    def test_transport_errors_are_retried_and_mapped(self):
        clock = Clock()
        f = counting(flaky(requests.ConnectionError("refused"), requests.Timeout("slow"), "ok"))
        assert call_with_retries(f, what="x", policy=RetryPolicy(), sleep=clock.sleep) == "ok"
        assert f.calls == 3
        f = counting(flaky(*[requests.ConnectionError("refused")] * 3))
        with pytest.raises(IbmCloudApiError, match="could not reach the service") as err:
            call_with_retries(f, what="x", policy=RetryPolicy(max_attempts=3), sleep=clock.sleep)
        assert f.calls == 3 and isinstance(err.value.__cause__, requests.ConnectionError)

    def test_total_time_cap(self):
        clock = Clock()
        f = counting(flaky(*[api_error(429, headers={"Retry-After": "25"})] * 10))
        with pytest.raises(IbmCloudApiError, match="HTTP 429"):
            call_with_retries(f, what="x", policy=RetryPolicy(max_total_s=60), sleep=clock.sleep)
        assert clock.sleeps == [25, 25]  # a third wait would end at 75 s
        assert f.calls == 3

    def test_total_time_counts_from_the_start_of_the_call(self):
        clock = Clock()

        def slow():  # each request takes 20 s of the clock
            clock.now += 20
            raise api_error(503, headers={"Retry-After": "5"})

        with pytest.raises(IbmCloudApiError):
            call_with_retries(slow, what="x", policy=RetryPolicy(max_total_s=60), sleep=clock.sleep)
        assert clock.sleeps == [5, 5]  # 20+5+20+5+20 = 70: a third wait would end past 60 s

    @pytest.mark.parametrize(
        ("code", "kind"),
        [(400, IbmCloudPermanentError), (403, IbmCloudPermanentError), (404, IbmCloudNotFoundError)],
    )
    def test_other_4xx_are_mapped_at_once(self, code, kind):
        clock = Clock()
        f = counting(flaky(api_error(code), "ok"))
        with pytest.raises(kind) as err:
            call_with_retries(f, what="get ws", policy=RetryPolicy(), sleep=clock.sleep)
        assert clock.sleeps == [] and f.calls == 1
        assert str(err.value).startswith("get ws:") and err.value.__cause__ is not None

    def test_airflow_errors_pass_through_unretried(self):
        clock = Clock()
        raised = IbmCloudApiError("no activityid")
        f = counting(flaky(raised, "ok"))
        with pytest.raises(IbmCloudApiError) as err:
            call_with_retries(f, what="x", policy=RetryPolicy(), sleep=clock.sleep)
        assert err.value is raised and f.calls == 1 and clock.sleeps == []

    def test_409_waits_when_asked_and_is_bounded(self):
        clock = Clock()
        policy = RetryPolicy(lock_wait_s=30, lock_poll_s=10)
        f = flaky(api_error(409), api_error(409), "ok")
        assert call_with_retries(f, what="x", policy=policy, wait_on_lock=True, sleep=clock.sleep) == "ok"
        assert clock.sleeps == [10, 10]
        clock = Clock()
        f = counting(flaky(*[api_error(409)] * 10))
        with pytest.raises(IbmCloudApiError, match="stayed locked for more than 30 s") as err:
            call_with_retries(f, what="x", policy=policy, wait_on_lock=True, sleep=clock.sleep)
        assert clock.sleeps == [10, 10, 10] and f.calls == 4  # a fourth poll would end at 40 s
        assert err.value.status_code == 409
        clock = Clock()
        with pytest.raises(IbmCloudApiError, match="locked"):
            call_with_retries(flaky(api_error(409)), what="x", policy=policy, sleep=clock.sleep)
        assert clock.sleeps == []

    def test_waiting_for_a_lock_is_not_a_failed_attempt(self, jitter):
        jitter("high")
        clock = Clock()
        policy = RetryPolicy(max_attempts=3, lock_poll_s=5, lock_wait_s=100)
        f = flaky(api_error(503), *[api_error(409)] * 4, api_error(503), "ok")
        result = call_with_retries(f, what="x", policy=policy, wait_on_lock=True, sleep=clock.sleep)
        assert result == "ok"
        # the second 503 is the second failure: its backoff is 2 s, not 2**5
        assert clock.sleeps == [1, 5, 5, 5, 5, 2]

    def test_a_lock_is_waited_out_past_the_total_time_of_failures(self):
        clock = Clock()
        policy = RetryPolicy(max_total_s=10, lock_wait_s=60, lock_poll_s=10)
        f = flaky(*[api_error(409)] * 5, "ok")
        assert call_with_retries(f, what="x", policy=policy, wait_on_lock=True, sleep=clock.sleep) == "ok"
        assert clock.sleeps == [10] * 5

    def test_recover_prevents_second_submission(self):
        clock = Clock()
        calls = []
        slots = []

        def submit():
            calls.append(1)
            raise api_error(502)

        result = call_with_retries(
            submit,
            what="x",
            policy=RetryPolicy(),
            recover=lambda exc: "job-1",
            sleep=clock.sleep,
            before_attempt=lambda: slots.append(1),
        )
        assert result == "job-1" and len(calls) == 1
        assert len(slots) == 1  # looking for the job is not a re-send of the request

    def test_recover_runs_after_the_wait_before_each_resend(self):
        clock = Clock()
        events = []
        outcomes = flaky(requests.ConnectionError("reset"), api_error(500), "sent")

        def send():
            events.append(("send", clock.now))
            return outcomes()

        def recover(exc):
            events.append(("recover", type(exc).__name__, clock.now))
            return None  # the server had not acted: send again

        result = call_with_retries(
            send,
            what="x",
            policy=RetryPolicy(),
            recover=recover,
            sleep=clock.sleep,
            before_attempt=lambda: events.append(("slot",)),
        )
        assert result == "sent"
        t1, t2 = clock.sleeps[0], clock.sleeps[0] + clock.sleeps[1]
        assert events == [
            ("slot",),
            ("send", 0.0),
            ("recover", "ConnectionError", t1),
            ("slot",),
            ("send", t1),
            ("recover", "ApiException", t2),
            ("slot",),
            ("send", t2),
        ]

    @pytest.mark.parametrize("first", [429, 409])
    def test_recover_not_consulted_after_429_or_a_lock(self, first):
        clock = Clock()
        seen = []
        f = flaky(api_error(first), "sent")
        result = call_with_retries(
            f,
            what="x",
            policy=RetryPolicy(),
            wait_on_lock=True,
            recover=lambda e: seen.append(e),
            sleep=clock.sleep,
        )
        assert result == "sent" and seen == []

    def test_before_attempt_runs_before_every_request_and_its_errors_pass_through(self):
        clock = Clock()
        slots = []
        f = counting(flaky(api_error(429), api_error(409), api_error(503), "ok"))
        call_with_retries(
            f,
            what="x",
            policy=RetryPolicy(),
            wait_on_lock=True,
            sleep=clock.sleep,
            before_attempt=lambda: slots.append(f.calls),
        )
        assert slots == [0, 1, 2, 3]  # each slot taken before its request
        exhausted = IbmCloudApiError("No Schematics request budget")

        def no_budget():
            raise exhausted

        f = counting(lambda: "ok")
        with pytest.raises(IbmCloudApiError) as err:
            call_with_retries(f, what="x", policy=RetryPolicy(), sleep=clock.sleep, before_attempt=no_budget)
        assert err.value is exhausted and f.calls == 0
