#!/usr/bin/env bash
# Submit the nightly ticket classification for one UTC date to the shared Ray cluster and
# wait for it. Run by the CronJob tierline-nightly-tickets (infra/kuberay/nightly-cronjob.yaml).
#
#   TIERLINE_SPEC          the job spec (mounted from the ConfigMap tierline-nightly)
#   TIERLINE_INPUT_ROOT    s3://bucket/prefix/ holding one folder of tickets per date
#   TIERLINE_RAY_DASHBOARD the Ray Jobs API of the cluster, http://<head-svc>:8265
#   TIERLINE_DATE          optional: the date to process (YYYY-MM-DD); default today, UTC
#
# The date becomes the input folder: <TIERLINE_INPUT_ROOT>/<date>/. The exit code is
# tierline's: 0 done, 1 job failed or incomplete, 2 bad usage or spec.
set -euo pipefail

: "${TIERLINE_SPEC:?set TIERLINE_SPEC to the job spec}"
: "${TIERLINE_INPUT_ROOT:?set TIERLINE_INPUT_ROOT to s3://bucket/prefix/}"
: "${TIERLINE_RAY_DASHBOARD:?set TIERLINE_RAY_DASHBOARD to http://<head-svc>:8265}"

day="${TIERLINE_DATE:-$(date -u +%F)}"
# Only a real calendar date may become part of an S3 prefix.
if [[ ! "$day" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] \
  || [[ "$(date -u -d "$day" +%F 2>/dev/null || true)" != "$day" ]]; then
  echo "submit-nightly: TIERLINE_DATE must be a date like 2026-11-27, got '$day'" >&2
  exit 2
fi

input="${TIERLINE_INPUT_ROOT%/}/${day}/"
echo "submit-nightly: $TIERLINE_SPEC for $day, input $input" >&2
exec tierline submit "$TIERLINE_SPEC" --address "$TIERLINE_RAY_DASHBOARD" --input "$input"
