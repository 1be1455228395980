"""Which template files Schematics keeps: its extension allowlist, applied to an uploaded tar.

Source: ``ibm-cloud-docs/schematics`` ``faqs/sc-general-faq.md`` (lastupdated 2024-01-08), "Files
removed or missing from Terraform, or Ansible template repos": Schematics analyses a template before
saving it and removes every file that is not on an allowlist of extensions, the files it names as
removed, files over 500 KB (images excepted) and folders whose name starts with a period.

The FAQ describes templates cloned from Git; it does not say whether an uploaded tar
(``PUT /v1/workspaces/{id}/template_data/{t_id}/template_repo_upload``) is filtered the same way.
The sandbox assumes it is (the stricter reading), so a template that works here also survives the
filter on IBM Cloud (docs/sandbox.md).
"""

from __future__ import annotations

from pathlib import PurePosixPath

#: "The allowed file extensions are ..." (the FAQ's list; ``_rsa`` and ``license`` are name endings).
ALLOWED_SUFFIXES = (
    ".cer", ".cfg", ".conf", ".crt", ".der", ".gitignore", ".html", ".j2", ".jacl", ".js", ".json",
    ".key", ".md", ".netrc", ".pem", ".properties", ".ps1", ".pub", ".py", ".service", ".sh", ".tf",
    ".tf.json", ".tfvars", ".tmpl", ".tpl", ".txt", ".yaml", ".yml", "_rsa", "license",
)  # fmt: skip
#: "The allowed image extensions are ..." (exempt from the size limit).
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".so", ".tif", ".tiff")
#: "The files explicitly removed are ..." (``.zip`` is on both lists; removal wins).
REMOVED_SUFFIXES = (
    ".asa", ".asax", ".exe", ".php5", ".pht", ".phtml", ".shtml", ".swf", ".tfstate",
    ".tfstate.backup", ".xap", ".zip", ".tar",
)  # fmt: skip
#: "All files that are larger than 500 KB are removed."
MAX_FILE_BYTES = 500 * 1024


def removal_reason(path: str, size: int) -> str | None:
    """Why Schematics would remove the template file ``path`` of ``size`` bytes; None if it keeps it."""
    parts = PurePosixPath(path).parts
    if any(part.startswith(".") and part not in (".", "..") for part in parts[:-1]):
        return "its folder's name starts with a period"
    name = parts[-1].lower() if parts else ""
    if name.endswith(REMOVED_SUFFIXES):
        return "its extension is on the list of removed files"
    if name.endswith(IMAGE_SUFFIXES):
        return None
    if not name.endswith(ALLOWED_SUFFIXES):
        return "its extension is not on the allowlist"
    if size > MAX_FILE_BYTES:
        return "it is larger than 500 KB"
    return None
