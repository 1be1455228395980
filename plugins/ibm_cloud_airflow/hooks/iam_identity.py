"""Hooks for the two IBM Cloud platform APIs the reaper needs besides VPC and Schematics.

* :class:`IamIdentityHook`: trusted profiles (list, delete) through ``IamIdentityV1``;
* :class:`GlobalTaggingHook`: a resource's user tags through ``GlobalTaggingV1`` (the VPC API does
  not return tags).

Both use the ``ibm_cloud_default`` connection: its API key, and the extras ``iam_identity_url``
(default: the IAM URL) and ``tagging_url`` (default: IBM's global tagging endpoint).
"""

from __future__ import annotations

import base64
import json
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from ibm_cloud_airflow.hooks.base import (
    IbmCloudConnectionConfig,
    RetryPolicy,
    call_with_retries,
    get_connection,
)


class _PlatformHook(BaseHook):
    conn_name_attr = "ibm_conn_id"
    default_conn_name = "ibm_cloud_default"
    conn_type = "ibm_cloud"

    def __init__(
        self, ibm_conn_id: str = default_conn_name, *, retry_policy: RetryPolicy | None = None
    ) -> None:
        super().__init__()
        self.ibm_conn_id = ibm_conn_id
        self.retry_policy = retry_policy or RetryPolicy()

    @cached_property
    def config(self) -> IbmCloudConnectionConfig:
        return IbmCloudConnectionConfig.from_connection(get_connection(self.ibm_conn_id))

    def _call(self, what: str, func: Any) -> Any:
        return call_with_retries(
            lambda: func().get_result(), what=what, policy=self.retry_policy, conn_id=self.ibm_conn_id
        )


class IamIdentityHook(_PlatformHook):
    hook_name = "IBM Cloud IAM Identity"

    @cached_property
    def client(self) -> Any:
        from ibm_platform_services import IamIdentityV1

        client = IamIdentityV1(authenticator=self.authenticator)
        client.set_service_url(self.config.iam_identity_url)
        return client

    @cached_property
    def authenticator(self) -> Any:
        return self.config.authenticator()

    def get_conn(self) -> Any:
        return self.client

    def account_id(self) -> str:
        """The API key's account, read from the IAM access token's ``account.bss`` claim."""
        token = self.authenticator.token_manager.get_token()
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return claims["account"]["bss"]

    def list_trusted_profiles(self) -> list[dict[str, Any]]:
        """Every trusted profile of the account (following ``pagetoken`` pages)."""
        from urllib.parse import parse_qs, urlparse

        account, token, out = self.account_id(), None, []
        while True:
            page = self._call(
                "list trusted profiles",
                lambda t=token: self.client.list_profiles(account, pagesize=100, pagetoken=t),
            )
            out.extend(page.get("profiles") or [])
            nxt = page.get("next")
            token_next = parse_qs(urlparse(nxt).query).get("pagetoken", [None])[0] if nxt else None
            if not token_next or token_next == token:
                return out
            token = token_next

    def delete_trusted_profile(self, profile_id: str) -> bool:
        """Delete a trusted profile (its policies go with it); False when it was already gone."""
        from ibm_cloud_airflow.hooks.base import IbmCloudNotFoundError

        try:
            self._call(f"delete trusted profile {profile_id}", lambda: self.client.delete_profile(profile_id))
        except IbmCloudNotFoundError:
            return False
        return True


class GlobalTaggingHook(_PlatformHook):
    hook_name = "IBM Cloud Global Tagging"

    @cached_property
    def client(self) -> Any:
        from ibm_platform_services import GlobalTaggingV1

        client = GlobalTaggingV1(authenticator=self.config.authenticator())
        client.set_service_url(self.config.tagging_url)
        return client

    def get_conn(self) -> Any:
        return self.client

    def user_tags(self, crn: str) -> list[str]:
        """The user tags attached to the resource ``crn``."""
        page = self._call(
            f"list tags of {crn}", lambda: self.client.list_tags(attached_to=crn, tag_type="user", limit=1000)
        )
        return [item["name"] for item in (page or {}).get("items") or []]
