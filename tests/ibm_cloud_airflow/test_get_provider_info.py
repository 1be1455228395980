"""The installable provider: its metadata, its connection forms, and what Airflow 3.3 discovers.

``plugins/pyproject.toml`` packages ``ibm_cloud_airflow`` as ``airflow-provider-ibm-cloud``; its entry
point ``apache_airflow_provider`` returns ``get_provider_info()``. These tests check that dict against
Airflow's own schemas, import everything it names, check that every form field lands in ``extra``
under the key the hooks parse, and run Airflow's ProvidersManager, the UI's connection-form service
and ``airflow providers list`` in a subprocess against an install of the package made here, offline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from importlib import import_module, metadata, resources
from pathlib import Path

import jsonschema
import pytest
from packaging.utils import canonicalize_name

from ibm_cloud_airflow.get_provider_info import (
    COS_CONN_TYPE,
    IBM_CLOUD_CONN_TYPE,
    PACKAGE_NAME,
    REGIONS,
    get_provider_info,
)
from ibm_cloud_airflow.hooks.base import (
    _REGION_RE,
    SCHEMATICS_ENDPOINTS,
    CosConnectionConfig,
    IbmCloudConnectionConfig,
)
from ibm_cloud_airflow.hooks.cos import CosHook
from ibm_cloud_airflow.hooks.schematics import SchematicsHook

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "plugins"
PYPROJECT = tomllib.loads((PLUGINS / "pyproject.toml").read_text())
INFO = get_provider_info()
CONN_TYPES = {c["connection-type"]: c for c in INFO["connection-types"]}


def _airflow_schema(name: str) -> dict:
    return json.loads(resources.files("airflow").joinpath(name).read_text())


def _import_string(path: str):
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)


# -- the metadata ---------------------------------------------------------------------------------------
def test_provider_info_is_valid_against_airflow_s_runtime_schema():
    # What ProvidersManager itself validates at discovery (a failure there hides the provider).
    jsonschema.validate(INFO, _airflow_schema("provider_info.schema.json"))


def test_connection_types_are_valid_against_the_stricter_provider_yaml_schema():
    # The runtime schema lets conn-fields/ui-field-behaviour through unchecked; provider.yaml's does not.
    schema = _airflow_schema("provider.yaml.schema.json")["properties"]["connection-types"]
    jsonschema.validate(INFO["connection-types"], schema)
    behaviour_schema = _airflow_schema("customized_form_field_behaviours.schema.json")
    for conn in INFO["connection-types"]:
        ui = conn["ui-field-behaviour"]
        converted = {"hidden_fields": ui["hidden-fields"], "relabeling": ui["relabeling"]}
        jsonschema.validate({**converted, "placeholders": ui["placeholders"]}, behaviour_schema)
        for name, field in conn["conn-fields"].items():
            # the UI renders each field from this JSON schema: its default must be valid against it
            if "default" in field["schema"]:
                jsonschema.validate(field["schema"]["default"], field["schema"])
            assert "__" not in name, name  # the UI splits extra__<type>__<name> on "__"


def test_the_package_name_matches_the_distribution_and_avoids_the_apache_prefix():
    assert PYPROJECT["project"]["name"] == INFO["package-name"] == PACKAGE_NAME
    # ProvidersManager raises when the two differ after canonicalisation, and runs its "coherence
    # check" (class paths must start with airflow.providers.) on names starting with apache-airflow.
    assert canonicalize_name(PACKAGE_NAME) == PACKAGE_NAME
    assert not PACKAGE_NAME.startswith("apache-airflow")
    entry_points = PYPROJECT["project"]["entry-points"]["apache_airflow_provider"]
    assert list(entry_points.values()) == ["ibm_cloud_airflow.get_provider_info:get_provider_info"]


def test_the_package_holds_the_provider_and_not_the_pipeline():
    from setuptools import find_packages

    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    packages = set(find_packages(where=str(PLUGINS / find["where"][0]), include=find["include"]))
    expected = {
        str(p.parent.relative_to(PLUGINS)).replace(os.sep, ".")
        for p in (PLUGINS / "ibm_cloud_airflow").rglob("__init__.py")
    }
    assert packages == expected and "ibm_cloud_airflow.hooks" in packages
    assert not any(p.startswith("gpu_pipeline") for p in packages)


def test_get_provider_info_imports_nothing_heavy():
    # Airflow calls it in every process that lists providers: no Airflow, SDK or form imports.
    code = (
        "import sys; before = set(sys.modules)\n"
        "from ibm_cloud_airflow.get_provider_info import get_provider_info; get_provider_info()\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    env = {**os.environ, "PYTHONPATH": str(PLUGINS)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in out.stdout.split()}
    assert loaded <= {"__future__", "ibm_cloud_airflow"}, out.stdout


def test_every_module_and_class_it_names_imports_and_is_what_it_says():
    from airflow.sdk import BaseHook, BaseOperatorLink
    from airflow.triggers.base import BaseTrigger

    for kind in ("hooks", "operators", "sensors", "triggers"):
        for entry in INFO[kind]:
            for module in entry["python-modules"]:
                import_module(module)
    integrations = {i["integration-name"] for i in INFO["integrations"]}
    for kind in ("hooks", "operators", "sensors", "triggers"):
        assert {e["integration-name"] for e in INFO[kind]} <= integrations, kind
    triggers = [
        obj
        for entry in INFO["triggers"]
        for module in entry["python-modules"]
        for obj in vars(import_module(module)).values()
        if isinstance(obj, type) and issubclass(obj, BaseTrigger) and obj.__module__ == module
    ]
    assert {t.__name__ for t in triggers} == {"SchematicsJobTrigger", "CosKeyTrigger"}
    for path in INFO["extra-links"]:
        assert issubclass(_import_string(path), BaseOperatorLink), path
    for conn_type, conn in CONN_TYPES.items():
        hook = _import_string(conn["hook-class-name"])
        assert issubclass(hook, BaseHook)
        # ProvidersManager logs an "Inconsistency!" when these differ; the UI shows hook-name
        assert (hook.conn_type, hook.hook_name) == (conn_type, conn["hook-name"])


def test_the_operators_use_the_registered_extra_link():
    # The link the provider registers (airflow providers links) is the one its operators carry.
    from ibm_cloud_airflow.operators import schematics

    used = {
        f"{type(link).__module__}.{type(link).__qualname__}"
        for obj in vars(schematics).values()
        if isinstance(obj, type)
        for link in getattr(obj, "operator_extra_links", ())
    }
    assert used and used <= set(INFO["extra-links"])


def test_every_hook_declares_the_connection_type_of_its_connection():
    from ibm_cloud_airflow.hooks.base import IbmCloudBaseHook
    from ibm_cloud_airflow.hooks.iam import IamPolicyHook
    from ibm_cloud_airflow.hooks.iam_identity import GlobalTaggingHook, IamIdentityHook
    from ibm_cloud_airflow.hooks.vpc import VpcHook

    for hook in (SchematicsHook, VpcHook, IamPolicyHook, IamIdentityHook, GlobalTaggingHook):
        assert (hook.conn_type, hook.default_conn_name) == (IBM_CLOUD_CONN_TYPE, "ibm_cloud_default"), hook
        assert issubclass(hook, IbmCloudBaseHook) and hook.config_class is IbmCloudConnectionConfig, hook
    assert (CosHook.conn_type, CosHook.default_conn_name) == (COS_CONN_TYPE, "ibm_cos_default")
    assert issubclass(CosHook, IbmCloudBaseHook) and CosHook.config_class is CosConnectionConfig


def test_the_end_from_trigger_option_defaults_to_true():
    option = INFO["config"]["ibm_cloud"]["options"]["end_from_trigger"]
    assert option["type"] == "boolean" and option["default"] == "True"
    assert "OpenLineage" in option["description"]


# -- the connection forms ----------------------------------------------------------------------------------
def test_the_region_choice_is_every_schematics_region():
    assert set(REGIONS) == {r for r in SCHEMATICS_ENDPOINTS if _REGION_RE.match(r)}
    region = CONN_TYPES[IBM_CLOUD_CONN_TYPE]["conn-fields"]["region"]["schema"]
    assert region["enum"] == REGIONS and region["default"] == "us-south"


def test_the_ibm_cloud_form_shows_an_api_key_and_the_extras_the_hook_reads():
    conn = CONN_TYPES[IBM_CLOUD_CONN_TYPE]
    ui = conn["ui-field-behaviour"]
    assert set(ui["hidden-fields"]) == {"host", "schema", "port", "login"}
    assert "password" not in ui["hidden-fields"] and ui["relabeling"]["password"] == "API key"
    assert set(conn["conn-fields"]) == {
        "region",
        "resource_group",
        "iam_url",
        "schematics_url",
        "vpc_url",
        "iam_identity_url",
        "tagging_url",
    }
    # the API key is the connection's (masked, encrypted) password, never an extra
    assert all(f["schema"].get("format") != "password" for f in conn["conn-fields"].values())


def test_the_cos_form_shows_hmac_keys_or_an_api_key_and_the_extras_the_hook_reads():
    conn = CONN_TYPES[COS_CONN_TYPE]
    ui = conn["ui-field-behaviour"]
    assert set(ui["hidden-fields"]) == {"host", "schema", "port"}
    assert {"login", "password"} <= set(ui["relabeling"]) and {"login", "password"} <= set(ui["placeholders"])
    assert set(conn["conn-fields"]) == {
        "endpoint_url",
        "vm_endpoint_url",
        "region",
        "instance_crn",
        "auth_type",
        "iam_url",
    }
    auth = conn["conn-fields"]["auth_type"]["schema"]
    assert auth["enum"] == ["hmac", "iam"] and auth["default"] == "hmac"


@pytest.mark.parametrize("conn_type", [IBM_CLOUD_CONN_TYPE, COS_CONN_TYPE])
def test_the_forms_require_exactly_what_the_hooks_require(conn_type):
    # A schema without null makes the UI require the field; the hooks refuse a connection without
    # region (ibm_cloud) or endpoint_url (ibm_cos), and give every other extra a default.
    fields = CONN_TYPES[conn_type]["conn-fields"]
    required = {name for name, field in fields.items() if "null" not in field["schema"]["type"]}
    with_default = {name for name, field in fields.items() if "default" in field["schema"]}
    assert required - with_default == ({"endpoint_url"} if conn_type == COS_CONN_TYPE else set())
    for field in fields.values():  # no description calls a field the form leaves optional "required"
        optional = "null" in field["schema"]["type"]
        assert not (optional and "required" in field["description"].lower()), field


class _Conn:
    def __init__(self, conn_type: str, extra: dict, login: str | None = None, password: str = "key"):  # noqa: S107
        self.conn_id, self.conn_type, self.login, self.password = "c", conn_type, login, password
        self.extra_dejson = extra


def test_every_ibm_cloud_form_field_lands_where_the_hook_reads_it():
    values = {
        "region": "eu-de",
        "resource_group": "rg-123",
        "iam_url": "https://iam.example",
        "schematics_url": "https://schematics.example",
        "vpc_url": "https://vpc.example/v1",
        "iam_identity_url": "https://identity.example",
        "tagging_url": "https://tags.example",
    }
    assert set(values) == set(CONN_TYPES[IBM_CLOUD_CONN_TYPE]["conn-fields"])
    cfg = IbmCloudConnectionConfig.from_connection(_Conn(IBM_CLOUD_CONN_TYPE, values))
    assert {name: getattr(cfg, name) for name in values} == values


def test_every_cos_form_field_lands_where_the_hook_reads_it():
    values = {
        "endpoint_url": "https://s3.example",
        "vm_endpoint_url": "https://s3.direct.example",
        "region": "eu-de",
        "instance_crn": "crn:v1:bluemix:public:cloud-object-storage:global:a/1:2::",
        "auth_type": "iam",
        "iam_url": "https://iam.example",
    }
    assert set(values) == set(CONN_TYPES[COS_CONN_TYPE]["conn-fields"])
    cfg = CosConnectionConfig.from_connection(_Conn(COS_CONN_TYPE, values, password="api-key"))
    assert {name: getattr(cfg, name) for name in values} == values
    assert cfg.api_key == "api-key" and cfg.access_key_id is None


def test_optional_fields_left_empty_in_the_form_take_the_hooks_defaults():
    # The form stores an untouched optional field as null (or ""); that must mean "the default".
    fields = CONN_TYPES[IBM_CLOUD_CONN_TYPE]["conn-fields"]
    extra = {name: None for name in fields} | {"region": "us-south", "iam_url": ""}
    cfg = IbmCloudConnectionConfig.from_connection(_Conn(IBM_CLOUD_CONN_TYPE, extra))
    assert cfg.schematics_url == SCHEMATICS_ENDPOINTS["us-south"]
    assert cfg.iam_url == cfg.iam_identity_url == "https://iam.cloud.ibm.com"
    assert cfg.resource_group is None
    fields = CONN_TYPES[COS_CONN_TYPE]["conn-fields"]
    extra = {name: None for name in fields} | {"endpoint_url": "https://s3.example", "auth_type": "hmac"}
    cfg = CosConnectionConfig.from_connection(_Conn(COS_CONN_TYPE, extra, login="id", password="secret"))
    assert (cfg.vm_endpoint_url, cfg.region, cfg.instance_crn) == ("https://s3.example", None, None)


@pytest.mark.parametrize("conn_type", ["generic", IBM_CLOUD_CONN_TYPE])
def test_an_ibm_cloud_connection_of_either_type_works_the_same(monkeypatch, conn_type):
    # Deployments from before the provider had its own types keep their generic connections.
    extra = {"region": "us-east", "resource_group": "rg-1", "vpc_url": "https://vpc.example/v1"}
    conn = {"conn_type": conn_type, "password": "apikey-123", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_IBM_TYPES_TEST", json.dumps(conn))
    assert SchematicsHook("ibm_types_test").validate() == {
        "conn_id": "ibm_types_test",
        "region": "us-east",
        "resource_group": "rg-1",
        "iam_url": "https://iam.cloud.ibm.com",
        "schematics_url": SCHEMATICS_ENDPOINTS["us-east"],
        "vpc_url": "https://vpc.example/v1",
        "rate_limit_per_minute": 45,
    }


@pytest.mark.parametrize("conn_type", ["generic", COS_CONN_TYPE])
def test_a_cos_connection_of_either_type_works_the_same(monkeypatch, conn_type):
    conn = {
        "conn_type": conn_type,
        "login": "hmac-id",
        "password": "hmac-secret",
        "extra": {"endpoint_url": "https://s3.example", "region": "us-east"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_COS_TYPES_TEST", json.dumps(conn))
    assert CosHook("cos_types_test").validate() == {
        "conn_id": "cos_types_test",
        "endpoint_url": "https://s3.example",
        "vm_endpoint_url": "https://s3.example",
        "auth_type": "hmac",
        "region": "us-east",
        "instance_crn": None,
    }


# -- what Airflow discovers once the package is installed ----------------------------------------------------
def _install(site: Path) -> None:
    """What ``pip install --target site ./plugins`` leaves, minus the copied code, without a build.

    The build backend (setuptools) cannot build offline in every venv, so the metadata that pip
    would write (METADATA, entry_points.txt) is written here from plugins/pyproject.toml, and the
    code comes from plugins/ on PYTHONPATH, as with ``make install``'s editable install.
    """
    project = PYPROJECT["project"]
    dist_info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist_info.mkdir(parents=True)
    requires = "".join(f"Requires-Dist: {dep}\n" for dep in project["dependencies"])
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n{requires}"
    )
    lines = []
    for group, entry_points in project["entry-points"].items():
        lines += [f"[{group}]", *(f"{name} = {value}" for name, value in entry_points.items())]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")


DISCOVER = textwrap.dedent(
    """
    import json, warnings
    warnings.simplefilter("ignore")
    from airflow.configuration import conf
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    pm = ProvidersManager()
    info = pm.providers[%(name)r]
    hooks = ProvidersManagerTaskRuntime().hooks
    meta = {m.connection_type: m.model_dump() for m in HookMetaService.hook_meta_data()}
    print(json.dumps({
        "version": info.version,
        "hooks": {t: [hooks[t].hook_class_name, hooks[t].package_name] for t in ("ibm_cloud", "ibm_cos")},
        "meta": {t: meta[t] for t in ("ibm_cloud", "ibm_cos")},
        "links": pm.extra_links_class_names,
        "triggers": [t.trigger_class_name for t in pm.trigger if t.package_name == %(name)r],
        "end_from_trigger": conf.getboolean("ibm_cloud", "end_from_trigger"),
    }))
    """
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("provider-site")
    _install(site)
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    return {**env, "AIRFLOW_HOME": str(home), "PYTHONPATH": os.pathsep.join([str(site), str(PLUGINS)])}


def test_airflow_discovers_the_installed_provider_its_hooks_forms_links_and_config(installed):
    code = DISCOVER % {"name": PACKAGE_NAME}
    out = subprocess.run(
        [sys.executable, "-c", code], env=installed, capture_output=True, text=True, timeout=300, cwd="/"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["version"] == PYPROJECT["project"]["version"]
    assert found["hooks"] == {
        "ibm_cloud": ["ibm_cloud_airflow.hooks.schematics.SchematicsHook", PACKAGE_NAME],
        "ibm_cos": ["ibm_cloud_airflow.hooks.cos.CosHook", PACKAGE_NAME],
    }
    assert "ibm_cloud_airflow.links.schematics.SchematicsWorkspaceLink" in found["links"]
    assert set(found["triggers"]) == {
        "ibm_cloud_airflow.triggers.schematics",
        "ibm_cloud_airflow.triggers.cos",
    }
    assert found["end_from_trigger"] is True
    # What the UI's connection form receives (GET /ui/connections/hook_meta)
    cloud, cos = found["meta"]["ibm_cloud"], found["meta"]["ibm_cos"]
    assert (cloud["hook_name"], cos["hook_name"]) == ("IBM Cloud", "IBM Cloud Object Storage")
    assert set(cloud["extra_fields"]) == set(CONN_TYPES[IBM_CLOUD_CONN_TYPE]["conn-fields"])
    assert set(cos["extra_fields"]) == set(CONN_TYPES[COS_CONN_TYPE]["conn-fields"])
    assert cloud["extra_fields"]["region"]["schema"]["enum"] == REGIONS
    assert cloud["extra_fields"]["region"]["value"] == "us-south"
    assert cos["extra_fields"]["auth_type"]["schema"]["enum"] == ["hmac", "iam"]
    for field in ("host", "url_schema", "port", "login"):
        assert cloud["standard_fields"][field]["hidden"] is True, field
    for field in ("host", "url_schema", "port"):
        assert cos["standard_fields"][field]["hidden"] is True, field
    assert cloud["standard_fields"]["password"] == {"hidden": False, "title": "API key", "placeholder": ANY}
    assert cos["standard_fields"]["login"]["hidden"] is False
    assert cos["standard_fields"]["login"]["title"] == "HMAC access key ID"
    # discovery must not complain about the package (coherence checks, import errors)
    complaints = [
        line
        for line in out.stderr.splitlines()
        if ("ibm" in line.lower()) and any(w in line for w in ("WARNING", "Warning", "ERROR", "Exception"))
    ]
    assert not complaints, complaints


def test_airflow_providers_list_shows_it(installed):
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        env=installed,
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    listed = {p["package_name"]: p["version"] for p in json.loads(out.stdout)}
    assert listed[PACKAGE_NAME] == PYPROJECT["project"]["version"]


def test_make_install_installed_it_into_this_environment():
    # `make install` installs plugins/ editable into .venv (and .venv-cluster); the image, a wheel.
    try:
        dist = metadata.distribution(PACKAGE_NAME)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{PACKAGE_NAME} is not installed in {sys.prefix}: run `make install`")
    assert dist.version == PYPROJECT["project"]["version"]
    eps = [ep.value for ep in dist.entry_points if ep.group == "apache_airflow_provider"]
    assert eps == ["ibm_cloud_airflow.get_provider_info:get_provider_info"]


class _Any:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)


ANY = _Any()


def test_every_third_party_import_of_the_provider_is_declared():
    """The provider installed alone must bring what it imports (plugins/pyproject.toml)."""
    import ast
    import re
    import sys
    from importlib.metadata import packages_distributions

    def dist_name(requirement: str) -> str:
        return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")

    project = PYPROJECT["project"]
    declared = {dist_name(r) for r in project["dependencies"]}
    declared |= {dist_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    distributions = packages_distributions()
    needed: dict[str, str] = {}
    for path in (PLUGINS / "ibm_cloud_airflow").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in ("__future__", "ibm_cloud_airflow"):
                    continue
                if module.startswith("airflow.providers."):  # apache-airflow-providers-<name>
                    name = module.split(".")[2]
                    dist = f"apache-airflow-providers-{name}"
                    if name == "common":
                        dist += "-" + module.split(".")[3]
                elif top == "airflow":
                    dist = "apache-airflow"
                else:
                    dist = distributions[top][0]
                needed[dist.lower().replace("_", "-")] = f"{path.relative_to(PLUGINS)}: {module}"
    missing = {dist: where for dist, where in needed.items() if dist not in declared}
    assert not missing, missing
