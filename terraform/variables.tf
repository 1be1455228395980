# Input variables. docs/architecture.md lists them; the DAG passes exactly these, and
# tests/terraform holds both sides to the list.

variable "run_id" {
  description = "Run slug from ibm_cloud_airflow.utils.run_identity.run_slug(): names every resource <run_id>-<role> and tags it airflow-run:<run_id>."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", var.run_id))
    error_message = "run_id must be 2-40 characters of [a-z0-9-], start with a letter and not end with '-'."
  }
}

variable "run_ttl" {
  description = "RFC 3339 UTC deadline of the run (e.g. 2026-12-01T17:03:00Z). Becomes the ttl:<YYYYMMDDTHHMMSSZ> tag and RUN_DEADLINE; the VM powers itself off after it."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$", var.run_ttl)) && can(formatdate("YYYY", var.run_ttl))
    error_message = "run_ttl must be an RFC 3339 UTC timestamp without fractions, like 2026-12-01T17:03:00Z."
  }
}

variable "region" {
  description = "IBM Cloud region of the VPC, e.g. us-south."
  type        = string
  default     = "us-south"

  validation {
    condition     = can(regex("^[a-z]{2}-[a-z]+$", var.region))
    error_message = "region must look like us-south or eu-de."
  }
}

variable "zone" {
  description = "Zone of the subnet and the GPU servers, inside region (e.g. us-south-1). GPU profiles are not offered in every zone."
  type        = string
  default     = "us-south-1"

  validation {
    condition     = can(regex("^[a-z]{2}-[a-z]+-[1-9]$", var.zone)) && startswith(var.zone, "${var.region}-")
    error_message = "zone must be a zone of the region, like us-south-1 for us-south."
  }
}

variable "resource_group_id" {
  description = "ID of the resource group for every resource; \"\" means the account's default group."
  type        = string
  default     = ""

  validation {
    condition     = var.resource_group_id == "" || can(regex("^[0-9a-f]{32}$", var.resource_group_id))
    error_message = "resource_group_id must be \"\" or a 32-hex-digit resource group ID."
  }
}

variable "gpu_profile" {
  description = "VPC GPU instance profile (gx2/gx3/gx3d families). gpu_profiles.json (the project's dated table) lists the zones that offer each one. The hourly price of this profile dominates the run's cost."
  type        = string
  default     = "gx3-16x80x1l4"

  validation {
    condition     = contains(keys(jsondecode(file("${path.module}/gpu_profiles.json")).profiles), var.gpu_profile)
    error_message = "gpu_profile must be a current x86-64 NVIDIA GPU profile listed in gpu_profiles.json: gx2-*v100, gx3-*l4, gx3-*l40s, gx3d-*a100p, gx3d-160x1792x8h100 or gx3d-160x1792x8h200."
  }

  # Refused: a region that offers the profile in none of its zones (IBM's region lists hold for every
  # account). Which zone of the region offers it depends on the account's zone mapping, so a zone
  # outside gpu_profiles.json is not refused here: validate warns, and the VPC API has the last word.
  validation {
    condition     = !contains(keys(jsondecode(file("${path.module}/gpu_profiles.json")).profiles), var.gpu_profile) || anytrue([for z in try(jsondecode(file("${path.module}/gpu_profiles.json")).profiles[var.gpu_profile].zones, []) : startswith(z, "${var.region}-")])
    error_message = "gpu_profile is not offered in this region; gpu_profiles.json lists the zones of each profile."
  }
}

variable "vm_count" {
  description = "Number of GPU servers; server i writes under <cos_prefix>/vm-<i>/ (how they share the work: distribution)."
  type        = number
  default     = 1

  validation {
    condition     = var.vm_count >= 1 && var.vm_count <= 8 && floor(var.vm_count) == var.vm_count
    error_message = "vm_count must be a whole number from 1 to 8."
  }
}

variable "image_name" {
  description = "Name of the stock Ubuntu 24.04 amd64 image (the patch suffix changes over time; see docs/terraform.md)."
  type        = string
  default     = "ibm-ubuntu-24-04-6-minimal-amd64-3"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]*[a-z0-9]$", var.image_name))
    error_message = "image_name must be an IBM Cloud image name (lower-case letters, digits and '-')."
  }
}

variable "cos_bucket" {
  description = "COS bucket the workload reads its bundle from and writes its outputs to."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.cos_bucket))
    error_message = "cos_bucket must be a valid bucket name (3-63 characters of a-z, 0-9, '.', '-')."
  }
}

variable "cos_endpoint" {
  description = "COS S3 endpoint URL the VM uses (the direct endpoint in IBM Cloud, e.g. https://s3.direct.us-south.cloud-object-storage.appdomain.cloud)."
  type        = string

  validation {
    condition     = can(regex("^https?://[^/\\s]+/?$", var.cos_endpoint))
    error_message = "cos_endpoint must be an http(s) URL without a path."
  }
}

variable "cos_prefix" {
  description = "The run's COS prefix, without a trailing slash (<output_prefix>/<dag_id>/<run_id>)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.cos_prefix))
    error_message = "cos_prefix must be a '/'-separated key prefix of [A-Za-z0-9._-] without leading or trailing slash."
  }
}

variable "cos_instance_crn" {
  description = "CRN of the COS service instance; scopes the trusted profile's policy (required in trusted_profile mode)."
  type        = string
  default     = ""

  validation {
    condition     = var.cos_auth_mode != "trusted_profile" || can(regex("^crn:v1:[^:]*:[^:]*:cloud-object-storage:[^:]*:a/[^:]+:[^:]+:", var.cos_instance_crn))
    error_message = "cos_instance_crn must be a COS service-instance CRN (crn:v1:...:cloud-object-storage:global:a/<account>:<guid>::) when cos_auth_mode is trusted_profile."
  }
}

variable "cos_profile_roles" {
  description = "COS service roles of the servers' trusted profile, on objects under <cos_prefix>/ of the run's bucket only. The workload needs Object Writer (upload, multipart) and Object Reader (download the bundle, read a marker's headers); it never lists or deletes."
  type        = list(string)
  default     = ["Object Writer", "Object Reader"]

  validation {
    condition     = length(var.cos_profile_roles) > 0 && alltrue([for role in var.cos_profile_roles : contains(["Object Writer", "Object Reader", "Content Reader", "Reader", "Writer", "Manager"], role)])
    error_message = "cos_profile_roles must be a non-empty list of COS service roles: Object Writer, Object Reader, Content Reader, Reader, Writer, Manager."
  }
}

variable "workload_bundle_key" {
  description = "COS key of the workload bundle (<cos_prefix>/bundle/workload.tar.gz) that bootstrap.sh downloads."
  type        = string

  validation {
    condition     = length(var.workload_bundle_key) > 0 && !startswith(var.workload_bundle_key, "/")
    error_message = "workload_bundle_key must be a non-empty COS key without a leading slash."
  }
}

variable "dataset" {
  description = "Training dataset: a built-in name, or cos://<key of an .npz in the bucket>; passed to workload/train.py as DATASET. With cos_auth_mode trusted_profile, a cos:// dataset gets the servers a read-only policy (Object Reader) on exactly that key."
  type        = string
  default     = "mnist"

  validation {
    # the DAG's dataset parameter allows the same (gpu_pipeline/params.py); run.env holds it unquoted.
    # The key is the IAM policy's exact path: no leading slash (the workload strips it, so the path
    # it reads would differ) and no wildcard (* ?) by the character class.
    condition     = can(regex("^([A-Za-z0-9_.-]+|cos://[A-Za-z0-9._-][A-Za-z0-9._/-]*[.]npz)$", var.dataset))
    error_message = "dataset must be a plain name ([A-Za-z0-9_.-]) or cos://<key>.npz (a key without a leading slash)."
  }
}

variable "epochs" {
  description = "Training epochs (EPOCHS)."
  type        = number
  default     = 5

  validation {
    condition     = var.epochs >= 1 && var.epochs <= 1000 && floor(var.epochs) == var.epochs
    error_message = "epochs must be a whole number from 1 to 1000."
  }
}

variable "batch_size" {
  description = "Training batch size (BATCH_SIZE)."
  type        = number
  default     = 128

  validation {
    condition     = var.batch_size >= 1 && var.batch_size <= 65536 && floor(var.batch_size) == var.batch_size
    error_message = "batch_size must be a whole number from 1 to 65536."
  }
}

variable "learning_rate" {
  description = "Optimizer learning rate (LEARNING_RATE)."
  type        = number
  default     = 0.001

  validation {
    condition     = var.learning_rate > 0 && var.learning_rate <= 10
    error_message = "learning_rate must be greater than 0 and at most 10."
  }
}

variable "seed" {
  description = "Random seed (SEED); instance i uses it as given, train.py may add INSTANCE_INDEX."
  type        = number
  default     = 42

  validation {
    condition     = var.seed >= 0 && floor(var.seed) == var.seed
    error_message = "seed must be a whole number >= 0."
  }
}

variable "checkpoint_every_epochs" {
  description = "The workload saves a training checkpoint to <cos_prefix>/vm-<i>/checkpoints/ every N epochs and resumes from the latest valid one (CHECKPOINT_EVERY_EPOCHS); 0 disables checkpoints."
  type        = number
  default     = 1

  validation {
    condition     = var.checkpoint_every_epochs >= 0 && floor(var.checkpoint_every_epochs) == var.checkpoint_every_epochs
    error_message = "checkpoint_every_epochs must be a whole number >= 0 (0: no checkpoints)."
  }
}

variable "distribution" {
  description = "How the servers share the work: single (each server trains on its own; the DAG uses it for one server), multi_worker (one data-parallel training over every server, MultiWorkerMirroredStrategy) or sweep (each server trains with its own entry of trials)."
  type        = string
  default     = "single"

  validation {
    condition     = contains(["single", "multi_worker", "sweep"], var.distribution)
    error_message = "distribution must be single, multi_worker or sweep."
  }

  validation {
    condition     = var.distribution == "single" || var.vm_count >= 2
    error_message = "distribution multi_worker and sweep need vm_count 2 or more."
  }
}

variable "trials" {
  description = "Sweep only: one set of hyperparameters per server, by instance index (empty: every server uses learning_rate, batch_size and seed)."
  type = list(object({
    learning_rate = number
    batch_size    = number
    seed          = number
  }))
  default = []

  validation {
    condition     = length(var.trials) == 0 || length(var.trials) == var.vm_count
    error_message = "trials must be empty or hold exactly one entry per server (vm_count)."
  }

  validation {
    condition     = length(var.trials) == 0 || var.distribution == "sweep"
    error_message = "trials are for distribution sweep only."
  }
}

variable "training_port" {
  description = "TCP port of TensorFlow's gRPC server on each server (multi_worker; TRAINING_PORT)."
  type        = number
  default     = 23456

  validation {
    condition     = var.training_port >= 1024 && var.training_port <= 65535 && floor(var.training_port) == var.training_port
    error_message = "training_port must be a whole number from 1024 to 65535."
  }
}

variable "collective_timeout_seconds" {
  description = "Multi_worker: a collective (gradient exchange) that does not complete in this many seconds fails the training (a dead server), instead of hanging until the run's TTL."
  type        = number
  default     = 300

  validation {
    condition     = var.collective_timeout_seconds >= 10 && var.collective_timeout_seconds <= 3600
    error_message = "collective_timeout_seconds must be from 10 to 3600."
  }
}

variable "cos_auth_mode" {
  description = "How the VM authenticates to COS: trusted_profile (default, keyless: metadata-service token of a trusted profile) or hmac (keys below, written into run.env)."
  type        = string
  default     = "trusted_profile"

  validation {
    condition     = contains(["trusted_profile", "hmac"], var.cos_auth_mode)
    error_message = "cos_auth_mode must be trusted_profile or hmac."
  }
}

variable "cos_hmac_access_key_id" {
  description = "COS HMAC access key ID, only in hmac mode (a secure Schematics variable)."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.cos_auth_mode != "hmac" || can(regex("^[A-Za-z0-9]{16,64}$", var.cos_hmac_access_key_id))
    error_message = "cos_hmac_access_key_id must be set (16-64 letters/digits) when cos_auth_mode is hmac."
  }
}

variable "cos_hmac_secret_access_key" {
  description = "COS HMAC secret access key, only in hmac mode (a secure Schematics variable)."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.cos_auth_mode != "hmac" || can(regex("^[A-Za-z0-9+/=]{16,128}$", var.cos_hmac_secret_access_key))
    error_message = "cos_hmac_secret_access_key must be set (16-128 characters) when cos_auth_mode is hmac."
  }
}

variable "debug_mode" {
  description = "Debug access, off by default: adds an SSH key, one floating IP per server and inbound TCP 22 from debug_allowed_cidr only."
  type        = bool
  default     = false
}

variable "debug_ssh_public_key" {
  description = "OpenSSH public key (ssh-rsa or ssh-ed25519) for debug mode; ignored otherwise."
  type        = string
  default     = ""

  validation {
    condition     = !var.debug_mode || can(regex("^(ssh-rsa|ssh-ed25519) [A-Za-z0-9+/=]+( .*)?$", var.debug_ssh_public_key))
    error_message = "debug_ssh_public_key must be an ssh-rsa or ssh-ed25519 public key when debug_mode is true."
  }
}

variable "debug_allowed_cidr" {
  description = "The one IPv4 CIDR allowed to reach port 22 in debug mode (e.g. your office /32); never 0.0.0.0/0."
  type        = string
  default     = ""

  validation {
    condition = var.debug_allowed_cidr == "" ? !var.debug_mode : (
      can(regex("^[0-9]{1,3}(\\.[0-9]{1,3}){3}/([0-9]|[1-2][0-9]|3[0-2])$", var.debug_allowed_cidr)) &&
      can(cidrhost(var.debug_allowed_cidr, 0)) &&
      !endswith(var.debug_allowed_cidr, "/0")
    )
    error_message = "debug_allowed_cidr must be an IPv4 CIDR narrower than /0 (not 0.0.0.0/0), and is required when debug_mode is true."
  }
}
