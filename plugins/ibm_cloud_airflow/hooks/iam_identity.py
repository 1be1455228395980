"""Hooks for the two IBM Cloud platform APIs the reaper needs besides VPC and Schematics.

* :class:`IamIdentityHook`: trusted profiles (list, delete) through ``IamIdentityV1``;
* :class:`GlobalTaggingHook`: a resource's user tags through ``GlobalTaggingV1`` (the VPC API does
  not return tags).

Both use the ``ibm_cloud_default`` connection: its API key, and the extras ``iam_identity_url``
(default: the IAM URL) and ``tagging_url`` (default: IBM's global tagging endpoint).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from ibm_cloud_airflow.exceptions import IbmCloudNotFoundError
from ibm_cloud_airflow.hooks.base import IbmCloudBaseHook


class IamIdentityHook(IbmCloudBaseHook):
    hook_name = "IBM Cloud IAM Identity"

    @cached_property
    def client(self) -> Any:
        from ibm_platform_services import IamIdentityV1

        client = IamIdentityV1(authenticator=self.authenticator)
        client.set_service_url(self.config.iam_identity_url)
        return client

    def get_conn(self) -> Any:
        return self.client

    def list_trusted_profiles(self) -> list[dict[str, Any]]:
        """Every trusted profile of the account (following ``pagetoken`` pages)."""
        from urllib.parse import parse_qs, urlparse

        account, token, out = self.account_id(), None, []
        while True:
            page = self._call(
                "list trusted profiles",
                lambda t=token: self.client.list_profiles(account, pagesize=100, pagetoken=t).get_result(),
            )
            out.extend(page.get("profiles") or [])
            nxt = page.get("next")
            token_next = parse_qs(urlparse(nxt).query).get("pagetoken", [None])[0] if nxt else None
            if not token_next or token_next == token:
                return out
            token = token_next

    def delete_trusted_profile(self, profile_id: str) -> bool:
        """Delete a trusted profile (its policies go with it); False when it was already gone."""
        try:
            self._call(
                f"delete trusted profile {profile_id}",
                lambda: self.client.delete_profile(profile_id).get_result(),
            )
        except IbmCloudNotFoundError:
            return False
        return True


class GlobalTaggingHook(IbmCloudBaseHook):
    hook_name = "IBM Cloud Global Tagging"

    @cached_property
    def client(self) -> Any:
        from ibm_platform_services import GlobalTaggingV1

        client = GlobalTaggingV1(authenticator=self.authenticator)
        client.set_service_url(self.config.tagging_url)
        return client

    def get_conn(self) -> Any:
        return self.client

    def user_tags(self, crn: str) -> list[str]:
        """The user tags attached to the resource ``crn``."""
        page = self._call(
            f"list tags of {crn}",
            lambda: self.client.list_tags(attached_to=crn, tag_type="user", limit=1000).get_result(),
        )
        return [item["name"] for item in (page or {}).get("items") or []]
