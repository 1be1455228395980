# One run = one isolated VPC with GPU servers that boot the workload from cloud-init, write to
# COS and power off at the deadline. Nothing listens: no inbound rule, no floating IP, no SSH
# key unless debug_mode. Every resource is named <run_id>-<role> and tagged with the run.

locals {
  # 2026-12-01T17:03:00Z -> 20261201T170300Z (tag values allow [A-Za-z0-9 _.:-] only)
  ttl_tag = "ttl:${formatdate("YYYYMMDD'T'hhmmss'Z'", var.run_ttl)}"
  tags    = ["airflow-run:${var.run_id}", local.ttl_tag]

  # null leaves the argument unset: the provider then uses the account's default group
  resource_group = var.resource_group_id == "" ? null : var.resource_group_id

  trusted_profile = var.cos_auth_mode == "trusted_profile"
  # crn:v1:bluemix:public:cloud-object-storage:global:a/<account>:<instance guid>::
  cos_instance_guid = local.trusted_profile ? split(":", var.cos_instance_crn)[7] : ""
  # cos://<key>.npz: the staged dataset's object key ("" for a built-in dataset, which needs no COS)
  dataset_cos_key = startswith(var.dataset, "cos://") ? trimprefix(var.dataset, "cos://") : ""

  # The profile's GPUs, which bootstrap.sh checks before training, and whether they sit on NVSwitch
  # (Fabric Manager needed): the project's profile table (plugins/gpu_pipeline/gpu_profiles.py).
  gpu_spec = jsondecode(file("${path.module}/gpu_profiles.json")).profiles[var.gpu_profile]
}

data "ibm_is_image" "image" {
  name = var.image_name
}

resource "ibm_is_vpc" "vpc" {
  name                        = "${var.run_id}-vpc"
  resource_group              = local.resource_group
  address_prefix_management   = "auto"
  default_security_group_name = "${var.run_id}-default-sg"
  default_network_acl_name    = "${var.run_id}-default-acl"
  default_routing_table_name  = "${var.run_id}-default-rt"
  tags                        = local.tags
}

# Outbound internet for package installs (NVIDIA driver, pip): the servers get no public address.
resource "ibm_is_public_gateway" "gateway" {
  name           = "${var.run_id}-pgw"
  vpc            = ibm_is_vpc.vpc.id
  zone           = var.zone
  resource_group = local.resource_group
  tags           = local.tags
}

resource "ibm_is_subnet" "subnet" {
  name                     = "${var.run_id}-subnet"
  vpc                      = ibm_is_vpc.vpc.id
  zone                     = var.zone
  total_ipv4_address_count = 16 # 8 servers + the 5 addresses IBM reserves per subnet
  public_gateway           = ibm_is_public_gateway.gateway.id
  resource_group           = local.resource_group
  tags                     = local.tags
}

# The servers' only security group. Security groups are stateful, so replies to the outbound
# connections below need no inbound rule; there is none (except TCP 22 in debug mode).
resource "ibm_is_security_group" "vm" {
  name           = "${var.run_id}-vm-sg"
  vpc            = ibm_is_vpc.vpc.id
  resource_group = local.resource_group
  tags           = local.tags
}

# HTTPS: COS direct endpoint, IAM, the metadata service (protocol https), pip, NVIDIA repos.
resource "ibm_is_security_group_rule" "egress_https" {
  group     = ibm_is_security_group.vm.id
  direction = "outbound"
  remote    = "0.0.0.0/0"
  protocol  = "tcp"
  port_min  = 443
  port_max  = 443
}

# HTTP: Ubuntu APT mirrors and the NVIDIA CUDA APT repository serve packages over plain HTTP
# (packages are verified by signed repository metadata).
resource "ibm_is_security_group_rule" "egress_http" {
  group     = ibm_is_security_group.vm.id
  direction = "outbound"
  remote    = "0.0.0.0/0"
  protocol  = "tcp"
  port_min  = 80
  port_max  = 80
}

# DNS: the VPC's default resolvers (161.26.0.10, 161.26.0.11) sit on the IBM service network.
resource "ibm_is_security_group_rule" "egress_dns" {
  group     = ibm_is_security_group.vm.id
  direction = "outbound"
  remote    = "161.26.0.0/16"
  protocol  = "udp"
  port_min  = 53
  port_max  = 53
}

# Multi-worker training only: the servers of this run reach each other over TCP, and nothing
# else reaches them (remote = this same security group). TensorFlow's gRPC server listens on
# var.training_port; NCCL, which carries the gradients between GPU servers, opens its own
# connections on ephemeral ports chosen at run time (it has no setting to pin them), so the rule
# spans TCP rather than one port. Security groups are stateful; the outbound twin is needed
# because outbound traffic is otherwise limited to 443, 80 and 53 above.
resource "ibm_is_security_group_rule" "cluster_inbound" {
  count     = var.distribution == "multi_worker" ? 1 : 0
  group     = ibm_is_security_group.vm.id
  direction = "inbound"
  remote    = ibm_is_security_group.vm.id
  protocol  = "tcp"
  port_min  = 1
  port_max  = 65535
}

resource "ibm_is_security_group_rule" "cluster_outbound" {
  count     = var.distribution == "multi_worker" ? 1 : 0
  group     = ibm_is_security_group.vm.id
  direction = "outbound"
  remote    = ibm_is_security_group.vm.id
  protocol  = "tcp"
  port_min  = 1
  port_max  = 65535
}

# One private address per server, reserved before any server exists: every server's cloud-init
# then lists the whole cluster (CLUSTER_HOSTS in run.env, TF_CONFIG for multi-worker training).
# Unbound at creation, so auto_delete must be false; Terraform deletes it after the server.
resource "ibm_is_subnet_reserved_ip" "vm" {
  count       = var.vm_count
  subnet      = ibm_is_subnet.subnet.id
  name        = "${var.run_id}-vm-${count.index}-ip"
  auto_delete = false
}

# Debug mode only: SSH from one CIDR (validated: never 0.0.0.0/0).
resource "ibm_is_security_group_rule" "debug_ssh" {
  count     = var.debug_mode ? 1 : 0
  group     = ibm_is_security_group.vm.id
  direction = "inbound"
  remote    = var.debug_allowed_cidr
  protocol  = "tcp"
  port_min  = 22
  port_max  = 22
}

# type from the key: the API assumes rsa when type is unset and refuses an ed25519 key then.
resource "ibm_is_ssh_key" "debug" {
  count          = var.debug_mode ? 1 : 0
  name           = "${var.run_id}-debug-key"
  public_key     = var.debug_ssh_public_key
  type           = startswith(var.debug_ssh_public_key, "ssh-ed25519 ") ? "ed25519" : "rsa"
  resource_group = local.resource_group
  tags           = local.tags
}

# Keyless COS: the servers get IAM tokens for this profile from the metadata service.
resource "ibm_iam_trusted_profile" "vm" {
  count       = local.trusted_profile ? 1 : 0
  name        = "${var.run_id}-vm-profile"
  description = "GPU servers of Airflow run ${var.run_id}: write outputs to COS bucket ${var.cos_bucket}."
}

# Exactly what the workload does, on the run's own objects: read the bundle and a marker's
# headers (Object Reader), write outputs (Object Writer). No list, no delete (Airflow deletes stale
# markers with its own credentials before the apply), no other run's prefix, nothing else.
resource "ibm_iam_trusted_profile_policy" "cos" {
  count       = local.trusted_profile ? 1 : 0
  iam_id      = ibm_iam_trusted_profile.vm[0].iam_id
  roles       = var.cos_profile_roles
  description = "Airflow run ${var.run_id}: cos://${var.cos_bucket}/${var.cos_prefix}/"

  resources {
    service              = "cloud-object-storage"
    resource_instance_id = local.cos_instance_guid
    resource_type        = "bucket"
    resource             = var.cos_bucket
  }

  # COS "path" condition (IAM v2 policy): object actions only on keys under the run's prefix.
  rule_conditions {
    key      = "{{resource.attributes.path}}"
    operator = "stringMatch"
    value    = ["${var.cos_prefix}/*"]
  }
  pattern = "attribute-based-condition:resource:literal-and-wildcard"
}

# A staged dataset (dataset = "cos://<key>.npz") usually lies outside the run's prefix: read that
# one object and nothing else. Object Reader is the least COS role that downloads (object.get,
# object.head; it cannot list, write or delete), and it supports the path condition, here the exact
# key (stringMatch without a wildcard matches only that key; the dataset's validation rules out * and ?).
resource "ibm_iam_trusted_profile_policy" "dataset" {
  count       = local.trusted_profile && local.dataset_cos_key != "" ? 1 : 0
  iam_id      = ibm_iam_trusted_profile.vm[0].iam_id
  roles       = ["Object Reader"]
  description = "Airflow run ${var.run_id}: read its dataset cos://${var.cos_bucket}/${local.dataset_cos_key}"

  resources {
    service              = "cloud-object-storage"
    resource_instance_id = local.cos_instance_guid
    resource_type        = "bucket"
    resource             = var.cos_bucket
  }

  rule_conditions {
    key      = "{{resource.attributes.path}}"
    operator = "stringMatch"
    value    = [local.dataset_cos_key]
  }
  pattern = "attribute-based-condition:resource:literal-and-wildcard"
}

resource "ibm_is_instance" "vm" {
  count          = var.vm_count
  name           = "${var.run_id}-vm-${count.index}"
  image          = data.ibm_is_image.image.id
  profile        = var.gpu_profile
  vpc            = ibm_is_vpc.vpc.id
  zone           = var.zone
  resource_group = local.resource_group
  keys           = ibm_is_ssh_key.debug[*].id
  tags           = local.tags

  # IBM restarts a server whose host failed (its default, stated here on purpose): the boot runs
  # the job again and it resumes from its last checkpoint in COS. "stop" would leave the server
  # stopped, billed for its volumes, until the wait replaced it (docs/architecture.md).
  availability_policy {
    host_failure = "restart"
  }

  primary_network_interface {
    name              = "eth0"
    subnet            = ibm_is_subnet.subnet.id
    security_groups   = [ibm_is_security_group.vm.id]
    allow_ip_spoofing = false

    primary_ip {
      reserved_ip = ibm_is_subnet_reserved_ip.vm[count.index].reserved_ip
    }
  }

  boot_volume {
    name               = "${var.run_id}-vm-${count.index}-boot"
    auto_delete_volume = true
    tags               = local.tags
  }

  metadata_service {
    enabled            = true
    protocol           = "https"
    response_hop_limit = 1
  }

  default_trusted_profile_target    = one(ibm_iam_trusted_profile.vm[*].id)
  default_trusted_profile_auto_link = local.trusted_profile ? true : null

  user_data = templatefile("${path.module}/cloud-init.yaml.tpl", {
    run_id                     = var.run_id
    run_deadline               = var.run_ttl
    instance_index             = count.index
    instance_count             = var.vm_count
    cos_endpoint               = var.cos_endpoint
    cos_bucket                 = var.cos_bucket
    cos_output_prefix          = "${var.cos_prefix}/vm-${count.index}"
    workload_bundle_key        = var.workload_bundle_key
    cos_auth                   = var.cos_auth_mode
    trusted_profile_id         = local.trusted_profile ? ibm_iam_trusted_profile.vm[0].id : ""
    dataset                    = var.dataset
    epochs                     = var.epochs
    # a sweep gives each server its own trial; otherwise every server uses the run's values
    batch_size                 = length(var.trials) > 0 ? var.trials[count.index].batch_size : var.batch_size
    learning_rate              = length(var.trials) > 0 ? var.trials[count.index].learning_rate : var.learning_rate
    seed                       = length(var.trials) > 0 ? var.trials[count.index].seed : var.seed
    checkpoint_every_epochs    = var.checkpoint_every_epochs
    distribution               = var.distribution
    cluster_hosts              = join(",", ibm_is_subnet_reserved_ip.vm[*].address)
    training_port              = var.training_port
    collective_timeout_seconds = var.collective_timeout_seconds
    expected_gpu_count         = local.gpu_spec.gpu_count
    nvswitch                   = local.gpu_spec.nvswitch
    cos_hmac_access_key_id     = var.cos_hmac_access_key_id
    cos_hmac_secret_access_key = var.cos_hmac_secret_access_key
    bootstrap_b64              = filebase64("${path.module}/bootstrap.sh")
  })

  # the policies must exist before the workload asks for a token and reads its dataset
  depends_on = [ibm_iam_trusted_profile_policy.cos, ibm_iam_trusted_profile_policy.dataset]

  timeouts {
    create = "30m"
    delete = "30m"
  }
}

# Debug mode only: one public address per server, for SSH from debug_allowed_cidr.
resource "ibm_is_floating_ip" "debug" {
  count          = var.debug_mode ? var.vm_count : 0
  name           = "${var.run_id}-vm-${count.index}-fip"
  target         = ibm_is_instance.vm[count.index].primary_network_interface[0].id
  resource_group = local.resource_group
  tags           = local.tags
}
