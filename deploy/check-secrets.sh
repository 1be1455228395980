#!/usr/bin/env bash
# Refuse to start a deployment with the placeholder secrets of .env.example (or none at all).
# Run by the airflow-init service before anything else; every other Airflow service waits for
# airflow-init to succeed, so a deployment with a placeholder secret never starts.
set -uo pipefail

problems=()
random_hint="python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
fernet_hint="python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'"

# is_placeholder VALUE: empty, a .env.example placeholder, or a well-known default
is_placeholder() {
  case "${1,,}" in
    "" | *change-me* | *changeme* | "<"*">" | airflow | admin | password | secret) return 0 ;;
    *) return 1 ;;
  esac
}

check_random() { # NAME: a long random string shared by every container
  local name="$1" value="${!1:-}"
  if is_placeholder "$value" || ((${#value} < 32)); then
    problems+=("$name is missing, a placeholder or shorter than 32 characters; generate one with: $random_hint")
  fi
}

check_password() { # NAME
  local name="$1" value="${!1:-}"
  if is_placeholder "$value" || ((${#value} < 12)); then
    problems+=("$name is missing, a placeholder or shorter than 12 characters; generate one with: $random_hint")
  fi
}

check_random AIRFLOW__API_AUTH__JWT_SECRET
check_random AIRFLOW__API__SECRET_KEY
check_password POSTGRES_PASSWORD
check_password _AIRFLOW_WWW_USER_PASSWORD
# A Fernet key is 32 random bytes, URL-safe base64: 43 characters and one '='.
if ! [[ "${AIRFLOW__CORE__FERNET_KEY:-}" =~ ^[A-Za-z0-9_-]{43}=$ ]]; then
  problems+=("AIRFLOW__CORE__FERNET_KEY is empty or not a Fernet key (connections would be stored unencrypted); generate one with: $fernet_hint")
fi

if ((${#problems[@]})); then
  echo "Refusing to start: fix these settings in .env (see .env.example):" >&2
  printf -- '- %s\n' "${problems[@]}" >&2
  exit 1
fi
echo "secrets: set, none is a placeholder"
