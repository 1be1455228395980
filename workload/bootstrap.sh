#!/usr/bin/env bash
# The GPU VM's boot script: cloud-init runs it as root, once, as
#     /opt/gpu-workload/bootstrap.sh /etc/gpu-workload/run.env
# and a systemd unit it installs runs it again after every reboot (the job resumes, or the
# marker is written). Steps (docs/workload.md):
#   1. read run.env; log everything to /var/log/gpu-workload/bootstrap.log
#   2. enforce RUN_DEADLINE: a poweroff timer plus a watchdog that stops the job and writes _FAILED
#   3. install the resume unit (gpu-workload.service)
#   4. fetch the workload bundle from COS with curl
#   5. install the NVIDIA driver (and Fabric Manager on NVSwitch systems; apt waits for its lock),
#      create the venv from requirements-gpu.txt
#   6. check that the GPUs the profile promises are all usable; else _FAILED and power off
#   7. run train.py; make sure a marker exists at the end (write _FAILED here if train.py could not)
# State (done markers per step) lives in /var/lib/gpu-workload.
#
# Sandbox mode (GPU_WORKLOAD_SANDBOX=1, set by the local sandbox only): paths live under
# GPU_WORKLOAD_ROOT; the driver, Fabric Manager, the GPU check, apt, venv creation (GPU_WORKLOAD_VENV
# is used), systemd and poweroff/reboot are skipped; bundle fetch, training, markers and the TTL
# watchdog run for real. GPU_WORKLOAD_GPU_STEPS=1 runs the GPU steps in sandbox mode too (tests put
# stub nvidia-smi, lspci, systemctl, apt-get, ... on PATH).
set -euo pipefail

readonly IMS_VERSION=2025-08-26
readonly LOG_TAIL_LINES=60
readonly TRAIN_MAX_ATTEMPTS=3
readonly KILL_GRACE_S=30
readonly POWEROFF_GRACE_S=120

RUN_ENV_FILE="${1:-}"
if [[ -z "$RUN_ENV_FILE" || ! -r "$RUN_ENV_FILE" ]]; then
  echo "usage: $0 /etc/gpu-workload/run.env (readable)" >&2
  exit 2
fi
RUN_ENV_FILE="$(cd "$(dirname "$RUN_ENV_FILE")" && pwd)/$(basename "$RUN_ENV_FILE")"

SANDBOX=0
[[ "${GPU_WORKLOAD_SANDBOX:-}" == "1" ]] && SANDBOX=1
if ((SANDBOX)); then
  ROOT="${GPU_WORKLOAD_ROOT:?GPU_WORKLOAD_SANDBOX=1 needs GPU_WORKLOAD_ROOT}"
  ROOT="${ROOT%/}"
  VENV="${GPU_WORKLOAD_VENV:?GPU_WORKLOAD_SANDBOX=1 needs GPU_WORKLOAD_VENV}"
else
  ROOT=""
  VENV=/opt/gpu-workload/venv
fi
OPT_DIR="$ROOT/opt/gpu-workload"
LOG_DIR="$ROOT/var/log/gpu-workload"
STATE_DIR="$ROOT/var/lib/gpu-workload"
LOG_FILE="$LOG_DIR/bootstrap.log"
BUNDLE_DIR="$OPT_DIR/bundle"
WORK_DIR="$STATE_DIR/work"
mkdir -p "$OPT_DIR" "$LOG_DIR" "$STATE_DIR"
chmod 700 "$STATE_DIR"

if ((SANDBOX)); then
  exec >>"$LOG_FILE" 2>&1
else
  exec > >(tee -a "$LOG_FILE") 2>&1 # also reaches cloud-init-output.log / the journal
fi

log() { printf '%s bootstrap[%d]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$" "$*"; }

STEP=start
TRAIN_PID=""
WATCHDOG_PID=""
MARKER_DONE=0

# ---------------------------------------------------------------------------------------------
# run.env: KEY=value lines, parsed (not sourced: nothing in it is executed)
# ---------------------------------------------------------------------------------------------
while IFS= read -r line || [[ -n "$line" ]]; do
  line="${line%$'\r'}"
  [[ -z "${line//[[:space:]]/}" || "$line" =~ ^[[:space:]]*# ]] && continue
  key="${line%%=*}"
  value="${line#*=}"
  if [[ "$line" != *=* || ! "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    log "run.env: ignoring a malformed line"
    continue
  fi
  if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then
    value="${BASH_REMATCH[1]}"
  fi
  export "$key=$value"
done <"$RUN_ENV_FILE"

for required in RUN_ID RUN_DEADLINE COS_ENDPOINT COS_BUCKET COS_OUTPUT_PREFIX WORKLOAD_BUNDLE_KEY; do
  if [[ -z "${!required:-}" ]]; then
    log "run.env lacks $required; cannot continue"
    exit 2
  fi
done
export COS_AUTH="${COS_AUTH:-trusted_profile}"
export METADATA_URL="${METADATA_URL:-https://api.metadata.cloud.ibm.com}"
METADATA_URL="${METADATA_URL%/}"
COS_ENDPOINT="${COS_ENDPOINT%/}"
COS_OUTPUT_PREFIX="${COS_OUTPUT_PREFIX%/}"
if [[ -z "${COS_REGION:-}" ]]; then
  COS_REGION="$(sed -n 's#.*[./]\([a-z][a-z]*-[a-z][a-z]*\)\.cloud-object-storage\..*#\1#p' <<<"$COS_ENDPOINT")"
  COS_REGION="${COS_REGION:-us-south}"
fi
export COS_REGION
if [[ "$COS_AUTH" == "hmac" && (-z "${COS_HMAC_ACCESS_KEY_ID:-}" || -z "${COS_HMAC_SECRET_ACCESS_KEY:-}") ]]; then
  log "COS_AUTH=hmac but COS_HMAC_ACCESS_KEY_ID/COS_HMAC_SECRET_ACCESS_KEY are missing"
  exit 2
fi
if ! DEADLINE_EPOCH="$(date -u -d "$RUN_DEADLINE" +%s)"; then
  log "RUN_DEADLINE '$RUN_DEADLINE' is not a date"
  exit 2
fi

# One bootstrap at a time (cloud-init and the resume unit never overlap; a manual rerun waits).
exec 9>"$STATE_DIR/lock"
if ! flock -n 9; then
  log "another bootstrap.sh holds $STATE_DIR/lock; exiting"
  exit 0
fi

log "run $RUN_ID instance ${INSTANCE_INDEX:-0}/${INSTANCE_COUNT:-1}: output s3://$COS_BUCKET/$COS_OUTPUT_PREFIX/," \
  "auth $COS_AUTH, deadline $RUN_DEADLINE, sandbox=$SANDBOX"

# ---------------------------------------------------------------------------------------------
# COS through curl (no Python yet). Secrets go to curl through a config read from a pipe, never
# on a command line.
# ---------------------------------------------------------------------------------------------
json_field() { sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" | head -n 1; }

json_escape() {
  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' | tr -d '\000-\010\013-\037' |
    awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }'
}

CURL_OPTS=(--fail --silent --show-error --retry 5 --retry-connrefused --retry-delay 2 --connect-timeout 10)

# The same two calls as ibm-cloud-sdk-core's VPCInstanceAuthenticator: an instance identity token,
# then an IAM token of the trusted profile.
iam_token() {
  local identity
  local data=()
  identity="$(curl "${CURL_OPTS[@]}" --max-time 30 -X PUT \
    "$METADATA_URL/identity/v1/token?version=$IMS_VERSION" \
    -H "Metadata-Flavor: ibm" -H "Content-Type: application/json" -H "Accept: application/json" \
    -d '{"expires_in": 3600}' | json_field access_token)"
  [[ -n "$identity" ]] || {
    log "metadata service: no instance identity token"
    return 1
  }
  if [[ -n "${TRUSTED_PROFILE_ID:-}" ]]; then
    data=(-d "{\"trusted_profile\": {\"id\": \"$TRUSTED_PROFILE_ID\"}}")
  fi
  curl "${CURL_OPTS[@]}" --max-time 30 -X POST \
    "$METADATA_URL/identity/v1/iam_tokens?version=$IMS_VERSION" \
    -H "Metadata-Flavor: ibm" -H "Content-Type: application/json" -H "Accept: application/json" \
    -K <(printf 'header = "Authorization: Bearer %s"\n' "$identity") \
    "${data[@]}" | json_field access_token
}

# cos_curl METHOD KEY BODY_FILE|"" [curl args...]: one authenticated request on s3://$COS_BUCKET/KEY.
cos_curl() {
  local method="$1" key="$2" body="$3" token sha
  shift 3
  local url="$COS_ENDPOINT/$COS_BUCKET/$key"
  local args=("$@")
  [[ -n "$body" ]] && args+=(--data-binary "@$body") # small files only: curl signs the body
  if [[ "$COS_AUTH" == "hmac" ]]; then
    # S3 wants the payload hash in x-amz-content-sha256; curl (7.x and 8.x alike) signs with it.
    if [[ -n "$body" ]]; then
      sha="$(sha256sum <"$body")"
    else
      sha="$(sha256sum </dev/null)"
    fi
    curl "${CURL_OPTS[@]}" -X "$method" --aws-sigv4 "aws:amz:$COS_REGION:s3" \
      -K <(printf 'user = "%s:%s"\n' "$COS_HMAC_ACCESS_KEY_ID" "$COS_HMAC_SECRET_ACCESS_KEY") \
      -H "x-amz-content-sha256: ${sha%% *}" "${args[@]}" "$url"
  else
    token="$(iam_token)" && [[ -n "$token" ]] || {
      log "could not get an IAM token from $METADATA_URL"
      return 1
    }
    curl "${CURL_OPTS[@]}" -X "$method" \
      -K <(printf 'header = "Authorization: Bearer %s"\n' "$token") "${args[@]}" "$url"
  fi
}

cos_get() { cos_curl GET "$1" "" --max-time 600 -o "$2"; }
cos_exists() { cos_curl HEAD "$1" "" --max-time 60 --head -o /dev/null 2>/dev/null; }
cos_put() { cos_curl PUT "$1" "$2" --max-time 300 -H "Content-Type: $3" -o /dev/null; }

write_failed() {
  local reason="$1" body="$STATE_DIR/_FAILED.json"
  log "FAILED: $reason"
  if cos_exists "$COS_OUTPUT_PREFIX/_SUCCESS"; then
    log "_SUCCESS is already there; not writing _FAILED"
    MARKER_DONE=1
    return 0
  fi
  cp "$LOG_FILE" "$STATE_DIR/bootstrap.log.upload" # a snapshot: the log grows while curl signs it
  cos_put "$COS_OUTPUT_PREFIX/bootstrap.log" "$STATE_DIR/bootstrap.log.upload" text/plain ||
    log "could not upload bootstrap.log"
  printf '{"error": "%s", "log_tail": "%s", "time": "%s", "source": "bootstrap.sh"}\n' \
    "$(printf '%s' "$reason" | json_escape)" \
    "$(tail -n "$LOG_TAIL_LINES" "$LOG_FILE" | json_escape)" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$body"
  if cos_put "$COS_OUTPUT_PREFIX/_FAILED" "$body" application/json; then
    log "wrote s3://$COS_BUCKET/$COS_OUTPUT_PREFIX/_FAILED"
    MARKER_DONE=1
  else
    log "could not write _FAILED to $COS_ENDPOINT"
    return 1
  fi
}

poweroff_now() {
  if ((SANDBOX)); then
    # The sandbox's launcher sees this file when the script exits and marks the instance stopped.
    log "sandbox: powering off (asking the sandbox to stop this server)"
    touch "$ROOT/poweroff-requested"
  else
    log "powering off"
    systemctl poweroff || shutdown -P now
  fi
}

# ---------------------------------------------------------------------------------------------
# Exit paths: a marker always exists at the end, except when the job is merely interrupted
# (reboot, shutdown, the sandbox stopping the server): then the resume unit carries on.
# ---------------------------------------------------------------------------------------------
# shellcheck disable=SC2329  # used by the traps below
stop_watchdog() {
  if [[ -n "$WATCHDOG_PID" ]]; then
    kill "$WATCHDOG_PID" 2>/dev/null || true
    WATCHDOG_PID=""
  fi
}

deadline_reached() { [[ -f "$STATE_DIR/deadline-reached" ]]; }

# shellcheck disable=SC2329
on_exit() {
  local rc=$?
  set +e
  trap - EXIT TERM INT
  stop_watchdog
  if ((!MARKER_DONE)); then
    if deadline_reached; then
      write_failed "RUN_DEADLINE $RUN_DEADLINE reached during step '$STEP'; the job was stopped"
    else
      write_failed "bootstrap.sh failed in step '$STEP' (exit status $rc); see bootstrap.log"
    fi
    ((rc == 0)) && rc=1
  fi
  if ((!MARKER_DONE)); then
    # Nothing could be reported to COS (access denied, or COS unreachable): stop, so that the
    # pipeline sees a stopped server through the VPC API and fails the run at once.
    log "no marker could be written to s3://$COS_BUCKET/$COS_OUTPUT_PREFIX/; powering off"
    poweroff_now
  elif deadline_reached; then
    poweroff_now
  fi
  log "exit $rc"
  exit "$rc"
}

# shellcheck disable=SC2329
on_signal() {
  set +e
  if [[ -n "$TRAIN_PID" ]]; then
    kill -TERM "$TRAIN_PID" 2>/dev/null
    wait "$TRAIN_PID" 2>/dev/null
    TRAIN_PID=""
  fi
  if deadline_reached; then
    exit 124 # on_exit writes _FAILED
  fi
  log "terminated during step '$STEP' (reboot/shutdown/stop): no marker, the job resumes at next boot"
  MARKER_DONE=1
  exit 143
}

trap on_exit EXIT
trap on_signal TERM INT

# ---------------------------------------------------------------------------------------------
# 2. TTL
# ---------------------------------------------------------------------------------------------
STEP=ttl
start_watchdog() {
  local main_pid=$$
  (
    trap - EXIT TERM INT
    printf -v now '%(%s)T' -1
    while ((now < DEADLINE_EPOCH)); do
      sleep 2
      printf -v now '%(%s)T' -1
    done
    log "watchdog: RUN_DEADLINE $RUN_DEADLINE reached; stopping the job"
    touch "$STATE_DIR/deadline-reached"
    kill -TERM "$main_pid" 2>/dev/null || true
    sleep "$KILL_GRACE_S"
    if [[ -f "$STATE_DIR/train.pid" ]]; then
      kill -KILL "$(cat "$STATE_DIR/train.pid")" 2>/dev/null || true
    fi
    if ((!SANDBOX)); then
      sleep "$POWEROFF_GRACE_S"
      poweroff_now
    fi
  ) 9>&- &
  WATCHDOG_PID=$!
}

if ((!SANDBOX)); then
  # Independent of this script: powers the server off even if bootstrap.sh or Airflow is gone.
  # Transient timers do not survive a reboot; the resume unit re-arms it at every boot.
  systemd-run --unit=gpu-workload-ttl --timer-property=AccuracySec=1s \
    --on-calendar="$(date -u -d "@$((DEADLINE_EPOCH + POWEROFF_GRACE_S))" '+%Y-%m-%d %H:%M:%S UTC')" \
    /bin/systemctl poweroff ||
    log "ttl timer not armed (already armed?)"
fi

# ---------------------------------------------------------------------------------------------
# 3. Resume after a reboot
# ---------------------------------------------------------------------------------------------
STEP=unit
if ((!SANDBOX)) && [[ ! -f "$STATE_DIR/unit.done" ]]; then
  cat >/etc/systemd/system/gpu-workload.service <<EOF
[Unit]
Description=GPU workload (resumes the training job after a reboot; re-arms the TTL)
Wants=network-online.target
After=network-online.target cloud-final.service

[Service]
Type=exec
ExecStart=/opt/gpu-workload/bootstrap.sh $RUN_ENV_FILE
KillMode=mixed
TimeoutStopSec=60

[Install]
WantedBy=multi-user.target
EOF
  systemctl daemon-reload
  systemctl enable gpu-workload.service # started by systemd at the next boot, not now
  touch "$STATE_DIR/unit.done"
fi

printf -v NOW '%(%s)T' -1
if [[ -f "$STATE_DIR/finished" ]]; then
  log "the job has already finished ($(cat "$STATE_DIR/finished")); nothing to do"
  MARKER_DONE=1
  ((NOW >= DEADLINE_EPOCH)) && poweroff_now
  exit 0
fi
STEP=ttl
if ((NOW >= DEADLINE_EPOCH)); then
  touch "$STATE_DIR/deadline-reached"
  log "RUN_DEADLINE $RUN_DEADLINE has passed before the job could finish"
  exit 124
fi
start_watchdog

# ---------------------------------------------------------------------------------------------
# 4. Bundle (stale markers of an earlier attempt are deleted by Airflow before the servers exist:
#    the trusted profile may upload and read under the run's prefix, never delete or list)
# ---------------------------------------------------------------------------------------------
STEP=bundle
if [[ ! -f "$STATE_DIR/bundle.done" ]]; then
  log "fetching s3://$COS_BUCKET/$WORKLOAD_BUNDLE_KEY"
  cos_get "$WORKLOAD_BUNDLE_KEY" "$OPT_DIR/workload.tar.gz"
  rm -rf "$BUNDLE_DIR"
  mkdir -p "$BUNDLE_DIR"
  tar -xzf "$OPT_DIR/workload.tar.gz" -C "$BUNDLE_DIR" --no-same-owner
  touch "$STATE_DIR/bundle.done"
fi
if [[ -f "$BUNDLE_DIR/train.py" ]]; then
  WORKLOAD_DIR="$BUNDLE_DIR"
elif [[ -f "$BUNDLE_DIR/workload/train.py" ]]; then
  WORKLOAD_DIR="$BUNDLE_DIR/workload"
else
  log "the bundle $WORKLOAD_BUNDLE_KEY has no train.py"
  rm -f "$STATE_DIR/bundle.done"
  exit 1
fi

# ---------------------------------------------------------------------------------------------
# 5. NVIDIA driver, Fabric Manager (NVSwitch systems) and the Python environment (docs/workload.md)
# ---------------------------------------------------------------------------------------------
# EXPECTED_GPU_COUNT: the profile's GPUs (run.env, from terraform/gpu_profiles.json); NVSWITCH=1 on
# the 8-GPU H100/H200 profiles, whose GPUs talk over NVSwitch: CUDA does not initialise there until
# NVIDIA Fabric Manager, of the driver's exact version, runs. The simulated servers of the sandbox
# are CPUs: these steps are skipped there, unless GPU_WORKLOAD_GPU_STEPS=1 (tests, with stub commands).
EXPECTED_GPU_COUNT="${EXPECTED_GPU_COUNT:-0}"
[[ "$EXPECTED_GPU_COUNT" =~ ^[0-9]+$ ]] || EXPECTED_GPU_COUNT=0
NVSWITCH="${NVSWITCH:-0}"
GPU_STEPS=1
if ((SANDBOX)) && [[ "${GPU_WORKLOAD_GPU_STEPS:-0}" != "1" ]]; then
  GPU_STEPS=0
fi
# apt and dpkg wait for a lock held by someone else (unattended-upgrades at first boot) instead of
# failing at once, for at most APT_LOCK_TIMEOUT_S: apt's DPkg::Lock::Timeout, also written to
# apt.conf.d so that ubuntu-drivers (python-apt) waits the same.
APT_LOCK_TIMEOUT_S="${APT_LOCK_TIMEOUT_S:-600}"
APT_GET=(apt-get -o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT_S" -y -q)

apt_wait_for_lock() {
  mkdir -p "$ROOT/etc/apt/apt.conf.d"
  printf 'DPkg::Lock::Timeout "%s";\n' "$APT_LOCK_TIMEOUT_S" >"$ROOT/etc/apt/apt.conf.d/80gpu-workload-lock"
}

has_nvidia_device() {
  if command -v lspci >/dev/null 2>&1; then
    lspci -n -d 10de: 2>/dev/null | grep -q .
  else
    grep -qs 0x10de /sys/bus/pci/devices/*/vendor
  fi
}

driver_version() { nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1 || true; }

smi_gpu_count() { nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | grep -c . || true; }

# What TensorFlow (CUDA) sees: on an NVSwitch system without Fabric Manager nvidia-smi lists the
# GPUs, but CUDA reports "system not yet initialized" and TensorFlow sees none.
tf_gpu_count() {
  "$VENV/bin/python" -c 'import tensorflow as tf; print(len(tf.config.list_physical_devices("GPU")))' \
    2>/dev/null | tail -n 1 || true
}

fabricmanager_active() { systemctl is-active --quiet nvidia-fabricmanager; }

# gpu_failure REASON: the server cannot train as its profile promises; say why in _FAILED and stop
# it, instead of training on CPU at the price of a GPU server.
gpu_failure() {
  write_failed "GPU check failed: $1"
  echo "failed $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$STATE_DIR/finished"
  MARKER_DONE=1
  poweroff_now
  exit 1
}

STEP=driver
if ((!GPU_STEPS)); then
  log "sandbox: skipping the NVIDIA driver, Fabric Manager and the GPU check (the simulated server is a CPU)"
elif ((EXPECTED_GPU_COUNT == 0)); then
  log "the profile has no GPU; skipping the NVIDIA driver"
elif [[ ! -f "$STATE_DIR/driver.done" ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt_wait_for_lock
  # Minimum drivers (reference §3.2): V100 535; L4/L40S/A100/H100 550; H200 570; B300 590.
  branch="${NVIDIA_DRIVER_BRANCH:-570}"
  if ! has_nvidia_device; then
    gpu_failure "device missing: the profile has $EXPECTED_GPU_COUNT GPU(s), but no NVIDIA device is on the PCI bus"
  elif ! nvidia-smi >/dev/null 2>&1; then
    log "installing the NVIDIA $branch-server driver"
    "${APT_GET[@]}" update
    "${APT_GET[@]}" install ubuntu-drivers-common
    ubuntu-drivers install --gpgpu "nvidia:$branch-server" ||
      "${APT_GET[@]}" install "nvidia-driver-$branch-server"
    "${APT_GET[@]}" install "nvidia-utils-$branch-server" # nvidia-smi (not part of --gpgpu)
    modprobe nvidia || true
    if ! nvidia-smi; then
      if [[ ! -f "$STATE_DIR/driver-reboot" ]]; then
        log "the driver needs a reboot; the resume unit continues after it"
        touch "$STATE_DIR/driver-reboot"
        MARKER_DONE=1
        systemctl reboot
        exit 0
      fi
      gpu_failure "driver: nvidia-smi fails even after a reboot (NVIDIA $branch-server driver)"
    fi
  fi
  touch "$STATE_DIR/driver.done"
fi

STEP=fabricmanager
if ((GPU_STEPS && EXPECTED_GPU_COUNT > 0 && NVSWITCH == 1)) && [[ ! -f "$STATE_DIR/fabricmanager.done" ]]; then
  apt_wait_for_lock
  version="$(driver_version)"
  fm_branch="${version%%.*}"
  if [[ -z "$fm_branch" ]]; then
    gpu_failure "driver: nvidia-smi reports no driver version, so no matching Fabric Manager can be installed"
  fi
  log "NVSwitch system: installing NVIDIA Fabric Manager $fm_branch for driver $version"
  "${APT_GET[@]}" install "nvidia-fabricmanager-$fm_branch" ||
    gpu_failure "fabric manager: could not install nvidia-fabricmanager-$fm_branch (driver $version)"
  fm_version="$(nv-fabricmanager --version 2>/dev/null | grep -o '[0-9][0-9]*\.[0-9][0-9.]*' | head -n 1 || true)"
  if [[ "$fm_version" != "$version" ]]; then
    gpu_failure "fabric manager: version '${fm_version:-unknown}' does not match driver $version"
  fi
  systemctl enable --now nvidia-fabricmanager ||
    gpu_failure "fabric manager: the nvidia-fabricmanager service does not start"
  touch "$STATE_DIR/fabricmanager.done"
fi

STEP=venv
if ((!SANDBOX)) && [[ ! -f "$STATE_DIR/venv.done" ]]; then
  apt_wait_for_lock
  "${APT_GET[@]}" install python3-venv python3-pip
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r "$WORKLOAD_DIR/requirements-gpu.txt"
  touch "$STATE_DIR/venv.done"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  log "no Python environment at $VENV"
  exit 1
fi

# ---------------------------------------------------------------------------------------------
# 6. Before training, at every boot: the GPUs the profile promises are all usable
# ---------------------------------------------------------------------------------------------
STEP=gpu-check
if ((GPU_STEPS && EXPECTED_GPU_COUNT > 0)); then
  smi_count="$(smi_gpu_count)"
  tf_count="$(tf_gpu_count)"
  tf_count="${tf_count:-0}"
  log "GPUs: the profile has $EXPECTED_GPU_COUNT, nvidia-smi sees $smi_count, TensorFlow sees $tf_count"
  if ((tf_count != EXPECTED_GPU_COUNT)); then
    if ! nvidia-smi >/dev/null 2>&1; then
      gpu_failure "driver: nvidia-smi fails; TensorFlow sees $tf_count of $EXPECTED_GPU_COUNT GPU(s)"
    elif ((smi_count < EXPECTED_GPU_COUNT)); then
      gpu_failure "device missing: nvidia-smi sees $smi_count of $EXPECTED_GPU_COUNT GPU(s)"
    elif ((NVSWITCH == 1)) && ! fabricmanager_active; then
      gpu_failure "fabric manager: nvidia-fabricmanager is not running, so CUDA cannot use the NVSwitch GPUs (TensorFlow sees $tf_count of $EXPECTED_GPU_COUNT)"
    else
      gpu_failure "driver: TensorFlow sees $tf_count of $EXPECTED_GPU_COUNT GPU(s) while nvidia-smi sees $smi_count (CUDA or driver version)"
    fi
  fi
fi

# ---------------------------------------------------------------------------------------------
# 7. Train
# ---------------------------------------------------------------------------------------------
STEP=train
attempts=0
[[ -f "$STATE_DIR/train.attempts" ]] && attempts="$(cat "$STATE_DIR/train.attempts")"
attempts=$((attempts + 1))
echo "$attempts" >"$STATE_DIR/train.attempts"
if ((attempts > TRAIN_MAX_ATTEMPTS)); then
  log "train.py was interrupted $TRAIN_MAX_ATTEMPTS times; giving up"
  exit 1
fi
mkdir -p "$WORK_DIR"
log "starting train.py (attempt $attempts)"
export WORK_DIR PYTHONUNBUFFERED=1
"$VENV/bin/python" "$WORKLOAD_DIR/train.py" &
TRAIN_PID=$!
echo "$TRAIN_PID" >"$STATE_DIR/train.pid"
set +e
wait "$TRAIN_PID"
rc=$?
set -e
TRAIN_PID=""
rm -f "$STATE_DIR/train.pid"
log "train.py exited with status $rc"

STEP=marker
case "$rc" in
  0)
    # train.py returns 0 only after _SUCCESS is written.
    MARKER_DONE=1
    echo "success $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$STATE_DIR/finished"
    ;;
  1)
    # train.py returns 1 only after _FAILED is written.
    MARKER_DONE=1
    echo "failed $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$STATE_DIR/finished"
    ;;
  *)
    if deadline_reached; then
      reason="RUN_DEADLINE $RUN_DEADLINE reached; train.py was stopped (exit status $rc)"
    else
      reason="train.py ended with exit status $rc without writing a marker"
    fi
    if write_failed "$reason"; then
      echo "failed $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$STATE_DIR/finished"
    fi
    ;;
esac
((rc == 0)) || exit 1
exit 0
