"""``Sandbox``: starts every emulated service in-process (one loopback server thread each)."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.control import ControlApp
from sandbox.faults import FaultSet
from sandbox.ibm.api_key_access import DEFAULT_API_KEY_POLICIES, ApiKeyAccess, ServicePolicy
from sandbox.ibm.capacity import Quotas
from sandbox.ibm.cos import CosApp, reset_moto_s3
from sandbox.ibm.cos_access import SERVICE as COS_SERVICE
from sandbox.ibm.cos_access import CosAuthorizer, Policy
from sandbox.ibm.iam import IamApp, TokenAuthority
from sandbox.ibm.iam_identity import IamIdentityApp
from sandbox.ibm.iam_policies import PolicyApi
from sandbox.ibm.launcher import ServerLauncher
from sandbox.ibm.metadata import MetadataApp
from sandbox.ibm.provider import IbmProvider
from sandbox.ibm.schematics import SchematicsService
from sandbox.ibm.server_loss import lose_instance
from sandbox.ibm.tagging import TaggingApp
from sandbox.ibm.vpc import VpcApp
from sandbox.ibm.vpc_rules import DEFAULT_QUOTAS
from sandbox.inventory import Inventory
from sandbox.server import ServiceServer
from sandbox.terraform import TerraformEngine

log = logging.getLogger(__name__)

# moto keeps S3 state per process: the first sandbox of a process empties it; a second sandbox
# started while the first runs shares its buckets (use separate processes to isolate them).
_COS_LOCK = threading.Lock()


def default_engine_factory(
    *,
    inventory: Inventory,
    faults: FaultSet,
    launcher: ServerLauncher,
    resource_delay_s: float,
    region: str,
    quotas: Quotas = DEFAULT_QUOTAS,
    api_key_access: ApiKeyAccess | None = None,
    caller_iam_id: str = "",
) -> TerraformEngine:
    """The Terraform runner (``sandbox/terraform``) with the IBM Cloud provider (``sandbox/ibm``)."""
    provider = IbmProvider(
        inventory=inventory,
        faults=faults,
        launcher=launcher,
        resource_delay_s=resource_delay_s,
        region=region,
        quotas=quotas,
        api_key_access=api_key_access,
        caller_iam_id=caller_iam_id,
    )
    return TerraformEngine(provider)


class Sandbox:
    """A local IBM Cloud (IAM, Schematics v1, COS, VPC, instance metadata) for tests and demos.

    ``engine_factory`` (keyword, for tests of the HTTP layer) replaces the Terraform engine: it is
    called with the keyword arguments of :func:`default_engine_factory` and returns an object
    with ``plan(run)``, ``apply(run) -> outputs``, ``destroy(run)`` and ``refresh(run)``.

    IAM is enforced: ``api_key_policies`` are the API-key identity's policies (default: what
    ``docs/terraform.md`` says the pipeline needs), ``cos_hmac_role`` is the COS role of the
    service credential behind the HMAC keys (``Writer``; a ``Reader`` credential cannot write).
    """

    def __init__(
        self,
        faults: dict[str, dict[str, Any]] | list[str] | None = None,
        token_ttl_s: int = 3600,
        rate_limit_per_min: int | None = 50,
        resource_delay_s: float = 0.05,
        state_dir: Path = Path(".sandbox"),
        workload_venv: Path = Path(".venv-workload"),
        *,
        region: str = "us-south",
        gpu_quota: int = DEFAULT_QUOTAS.gpus,
        vcpu_quota: int = DEFAULT_QUOTAS.vcpu,
        memory_quota_gb: int = DEFAULT_QUOTAS.memory_gb,
        engine_factory: Callable[..., Any] | None = None,
        api_key_policies: tuple[ServicePolicy, ...] | list[ServicePolicy] = DEFAULT_API_KEY_POLICIES,
        cos_hmac_role: str = "Writer",
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.workload_venv = Path(workload_venv).resolve()
        self.region = region
        # The region's quotas, all instances together (IBM's defaults: 200 vCPU, 5600 GB, 16 GPUs).
        self.quotas = Quotas(vcpu=vcpu_quota, memory_gb=memory_quota_gb, gpus=gpu_quota)
        self.token_ttl_s = token_ttl_s
        self.rate_limit_per_min = rate_limit_per_min
        self.resource_delay_s = resource_delay_s
        self.inventory = Inventory(region=region)
        self.faults = FaultSet()
        if faults:
            self.faults.set(faults)
        self.api_key = "sbx-" + secrets.token_urlsafe(24)
        self.cos_hmac = {"access_key_id": secrets.token_hex(16), "secret_access_key": secrets.token_hex(24)}
        account = self.inventory.account_id
        self.cos_instance_crn = (
            f"crn:v1:bluemix:public:cloud-object-storage:global:a/{account}:{uuid.uuid4()}::"
        )
        self.api_key_access = ApiKeyAccess(api_key_policies, self.faults)
        self.cos_hmac_role = cos_hmac_role
        self._engine_factory = engine_factory or default_engine_factory
        self.engine: Any = None
        self.launcher: ServerLauncher | None = None
        self.endpoints: dict[str, Any] = {}
        self._servers: list[ServiceServer] = []
        self._schematics: SchematicsService | None = None
        self._started = False
        self._cos_locked = False

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Sandbox:
        if self._started:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        authority = TokenAuthority(self.api_key, self.faults, self.token_ttl_s, self.inventory.account_id)
        self._cos_locked = _COS_LOCK.acquire(blocking=False)
        if self._cos_locked:
            reset_moto_s3()
        else:
            log.warning("another sandbox runs in this process: COS buckets are shared with it")
        try:
            policies = PolicyApi(authority, self.inventory, api_key_access=self.api_key_access)
            iam = self._serve("iam", IamApp(authority, self.inventory, policies=policies))
            metadata = self._serve("metadata", MetadataApp(authority, self.inventory))
            authorizer = CosAuthorizer(
                instance_guid=self.cos_instance_crn.split(":")[7],
                hmac_subject=f"hmac:{self.cos_hmac['access_key_id']}",
                hmac_role=self.cos_hmac_role,
                user_policies=lambda: [
                    Policy(subject=authority.user["iam_id"], roles=p.roles, origin="API key")
                    for p in self.api_key_access.current()
                    if p.service == COS_SERVICE
                ],
                inventory=self.inventory,
            )
            cos = self._serve(
                "cos", CosApp(authority, self.inventory, **self.cos_hmac, authorizer=authorizer)
            )
            vpc = self._serve("vpc", VpcApp(authority, self.inventory, self._stop_server))
            iam_identity = self._serve("iam_identity", IamIdentityApp(authority, self.inventory))
            tagging = self._serve("tagging", TaggingApp(authority, self.inventory))
            inventory = self.inventory
            self.launcher = ServerLauncher(
                workload_venv=self.workload_venv,
                state_dir=self.state_dir,
                metadata_url=metadata.url,
                faults=self.faults,
                # a server that powers itself off shows as stopped in the VPC API, as on IBM Cloud
                on_poweroff=lambda instance_id: inventory.update_attrs(instance_id, status="stopped"),
                # server_lost: the instance is gone (deleted) or stopped, as its host failure left it
                on_lost=lambda instance_id, how: lose_instance(inventory, instance_id, how),
            )
            self.engine = self._engine_factory(
                inventory=self.inventory,
                faults=self.faults,
                launcher=self.launcher,
                resource_delay_s=self.resource_delay_s,
                region=self.region,
                quotas=self.quotas,
                api_key_access=self.api_key_access,
                caller_iam_id=authority.user["iam_id"],
            )
            self._schematics = SchematicsService(
                inventory=self.inventory,
                faults=self.faults,
                authority=authority,
                engine=self.engine,
                state_dir=self.state_dir,
                rate_limit_per_min=self.rate_limit_per_min,
                region=self.region,
            )
            schematics = self._serve("schematics", self._schematics)
            self._schematics.set_base_url(schematics.url)
            control = self._serve("control", ControlApp(self.inventory, self.faults, self.set_faults))
        except BaseException:
            self.stop()
            raise
        self.endpoints = {
            "iam": iam.url,
            "schematics": schematics.url,
            "cos": cos.url,
            "vpc": f"{vpc.url}/v1",
            "metadata": metadata.url,
            "iam_identity": iam_identity.url,
            "tagging": tagging.url,
            "inventory": f"{control.url}/sandbox/inventory",
            "faults": f"{control.url}/sandbox/faults",
            "api_key": self.api_key,
            "cos_hmac": dict(self.cos_hmac),
            "cos_instance_crn": self.cos_instance_crn,
            "region": self.region,
        }
        self.endpoints_file.write_text(json.dumps(self.endpoints, indent=2) + "\n")
        self._started = True
        return self

    def _stop_server(self, instance_id: str) -> None:
        """A simulated server whose instance was deleted through the VPC API stops, as on a real VM."""
        if self.launcher is not None:
            self.launcher.stop(instance_id)

    def _serve(self, name: str, app: Any) -> ServiceServer:
        server = ServiceServer(name, app)
        server.start()
        self._servers.append(server)
        return server

    @property
    def endpoints_file(self) -> Path:
        return self.state_dir / "endpoints.json"

    def stop(self) -> None:
        """Stop jobs, workload processes and servers. Safe to call twice."""
        if self._schematics is not None:
            self._schematics.close()
        if self.launcher is not None:
            try:
                self.launcher.stop_all()  # the workload processes of simulated servers
            except Exception:
                log.exception("stopping simulated servers failed")
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        if self._started:
            self.endpoints_file.unlink(missing_ok=True)
        self._started = False
        if self._cos_locked:
            _COS_LOCK.release()
            self._cos_locked = False

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers ----------------------------------------------------------------------------
    def set_faults(self, faults: dict[str, dict[str, Any]] | list[str] | None) -> None:
        """Replace the active faults (``[]``/None clears); fault counters start over."""
        self.faults.set(faults or [])
        if self._schematics is not None:
            self._schematics.reset_fault_state()

    def request_counts(self) -> dict[str, int]:
        """``{"<service> <METHOD> <route>": n}`` for every request served so far."""
        return self.inventory.request_counts()

    def airflow_connections(self) -> dict[str, str]:
        """Env vars defining ``ibm_cloud_default`` and ``ibm_cos_default`` for this sandbox."""
        ep = self.endpoints
        cloud = {
            "conn_type": "ibm_cloud",
            "password": ep["api_key"],
            "extra": {
                "region": ep["region"],
                "iam_url": ep["iam"],
                "schematics_url": ep["schematics"],
                "vpc_url": ep["vpc"],
                "iam_identity_url": ep["iam_identity"],
                "tagging_url": ep["tagging"],
            },
        }
        cos = {
            "conn_type": "ibm_cos",
            "login": ep["cos_hmac"]["access_key_id"],
            "password": ep["cos_hmac"]["secret_access_key"],
            "extra": {
                "endpoint_url": ep["cos"],
                "region": ep["region"],
                "instance_crn": ep["cos_instance_crn"],
            },
        }
        return {
            "AIRFLOW_CONN_IBM_CLOUD_DEFAULT": json.dumps(cloud),
            "AIRFLOW_CONN_IBM_COS_DEFAULT": json.dumps(cos),
        }

    def cos_client(self) -> Any:
        """An ``ibm_boto3`` S3 client signed with the sandbox HMAC keys."""
        import ibm_boto3
        from ibm_botocore.client import Config

        return ibm_boto3.client(
            "s3",
            aws_access_key_id=self.cos_hmac["access_key_id"],
            aws_secret_access_key=self.cos_hmac["secret_access_key"],
            endpoint_url=self.endpoints["cos"],
            region_name=self.region,
            config=Config(signature_version="s3v4"),
        )

    def api_key_cos_client(self) -> Any:
        """An ``ibm_boto3`` S3 client that calls COS as the API key's identity (IAM bearer tokens)."""
        import ibm_boto3
        from ibm_botocore.client import Config

        return ibm_boto3.client(
            "s3",
            ibm_api_key_id=self.api_key,
            ibm_service_instance_id=self.cos_instance_crn,
            ibm_auth_endpoint=f"{self.endpoints['iam']}/identity/token",
            endpoint_url=self.endpoints["cos"],
            config=Config(signature_version="oauth"),
        )

    def ensure_bucket(self, name: str) -> None:
        """Create bucket ``name`` unless it exists, as the API key's identity (the account's admin)."""
        client = self.api_key_cos_client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if name not in existing:
            client.create_bucket(Bucket=name)
