#!/usr/bin/env bash
# A local S3 endpoint without docker: moto's S3 server on loopback, buckets created, and the
# `export` lines that point boto3, pyarrow and tierline at it printed on stdout.
#
#   infra/local/s3-local.sh                       # foreground; Ctrl-C stops it
#   eval "$(infra/local/s3-local.sh --detach)"    # background; exports land in this shell
#   infra/local/s3-local.sh --port 9100 --bucket tierline-local --bucket acme-support
#
# Options (or the environment variables in brackets):
#   --host ADDR     interface to bind [S3_LOCAL_HOST], default 127.0.0.1
#   --port N        port [S3_LOCAL_PORT], default 9000 (MinIO's, so docs and specs match)
#   --bucket NAME   bucket to create, repeatable [S3_LOCAL_BUCKETS, space-separated],
#                   default: tierline-local
#   --detach        leave the server running in the background and return
#
# Needs a Python with moto[server] and boto3: the repository's .venv after
# `pip install -e '.[test]'` is used when present, else $PYTHON, else python3.
# The data lives in the server's memory and is gone when it stops. The credentials printed
# are moto's placeholders ("testing"), for this machine only.
set -euo pipefail

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

host="${S3_LOCAL_HOST:-127.0.0.1}"
port="${S3_LOCAL_PORT:-9000}"
read -r -a buckets <<< "${S3_LOCAL_BUCKETS:-tierline-local}"
detach=0
custom_buckets=0

while (($#)); do
  case "$1" in
    --host) host="${2:?--host needs an address}"; shift 2 ;;
    --port) port="${2:?--port needs a number}"; shift 2 ;;
    --bucket)
      if ((!custom_buckets)); then buckets=(); custom_buckets=1; fi
      buckets+=("${2:?--bucket needs a name}"); shift 2 ;;
    --detach) detach=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "s3-local: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

if [[ ! "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
  echo "s3-local: --port must be a number from 1 to 65535, got '$port'" >&2
  exit 2
fi
for bucket in "${buckets[@]}"; do
  # S3's rules, shortened: 3-63 lowercase letters, digits, dots and hyphens.
  if [[ ! "$bucket" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]]; then
    echo "s3-local: '$bucket' is not a valid bucket name (3-63 of a-z 0-9 . -)" >&2
    exit 2
  fi
done

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$repo_root/.venv/bin/python" ]]; then
    python="$repo_root/.venv/bin/python"
  else
    python=python3
  fi
fi
if ! "$python" -c 'import boto3, moto.server' 2>/dev/null; then
  echo "s3-local: $python cannot import moto.server and boto3." >&2
  echo "  install them: $python -m pip install 'moto[server]' boto3" >&2
  echo "  (or the repository's test extras: pip install -e '.[test]')" >&2
  exit 2
fi

# Refuse a port something else already answers on: the buckets would go to that server.
if "$python" - "$host" "$port" <<'PY'
import socket, sys
with socket.socket() as s:
    s.settimeout(0.5)
    sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)
PY
then
  echo "s3-local: something already listens on $host:$port; pick another --port" >&2
  exit 1
fi

log="$(mktemp "${TMPDIR:-/tmp}/tierline-s3-local.XXXXXX")"
"$python" -m moto.server -H "$host" -p "$port" > "$log" 2>&1 &
pid=$!

stop_server() {
  kill "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  rm -f "$log"
}
if ((!detach)); then
  trap stop_server EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
fi

endpoint="http://$host:$port"
if ! "$python" - "$endpoint" "${buckets[@]}" <<'PY'; then
import sys
import time

import boto3
from botocore.config import Config

endpoint, names = sys.argv[1], sys.argv[2:]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
    config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
)
deadline = time.monotonic() + 30
while True:
    try:
        s3.list_buckets()
        break
    except Exception as exc:  # not up yet: connection refused, reset, ...
        if time.monotonic() > deadline:
            sys.exit(f"s3-local: no answer from {endpoint} after 30 s: {exc}")
        time.sleep(0.2)
for name in names:
    s3.create_bucket(Bucket=name)
PY
  echo "s3-local: the server did not come up; its log:" >&2
  cat "$log" >&2 || true
  ((detach)) && stop_server
  exit 1
fi
if ! kill -0 "$pid" 2> /dev/null; then
  echo "s3-local: the server exited; its log:" >&2
  cat "$log" >&2 || true
  exit 1
fi

echo "s3-local: moto S3 on $endpoint, buckets: ${buckets[*]}" >&2
cat << EOF
export AWS_ENDPOINT_URL=$endpoint
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
EOF

if ((detach)); then
  echo "# stop it with: kill $pid   (log: $log)"
  exit 0
fi
echo "s3-local: running (pid $pid); Ctrl-C stops it" >&2
wait "$pid"
