#!/usr/bin/env bash
# Submit the nightly ticket classification for one UTC date to the shared Ray cluster and
# wait for it. Run by the CronJob tierline-nightly-tickets (infra/kuberay/nightly-cronjob.yaml).
#
#   TIERLINE_SPEC          the job spec (mounted from the ConfigMap tierline-nightly)
#   TIERLINE_INPUT_ROOT    s3://bucket/prefix/ holding one folder of tickets per date
#   TIERLINE_RAY_DASHBOARD the Ray Jobs API of the cluster, http://<head-svc>:8265
#   TIERLINE_DATE          optional: the date to process (YYYY-MM-DD); default today, UTC
#   TIERLINE_ROUTER_URI    optional: s3:// URI of the learned router the spec routes with
#                          (routing.model). Set, a job that ended well is followed by a
#                          retrain from its cascade verdicts, on the cluster (the submitter
#                          holds no S3 access); the new router replaces the file only if it
#                          predicts better on rows it did not train on.
#   TIERLINE_OUTPUT_ROOT   the spec's output.uri (needed with TIERLINE_ROUTER_URI)
#
# The date becomes the input folder, <TIERLINE_INPUT_ROOT>/<date>/, and the job id,
# nightly-<date> (so the retrain knows where the night's outputs are). The exit code is
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

if [[ -n "${TIERLINE_ROUTER_URI:-}" ]]; then
  : "${TIERLINE_OUTPUT_ROOT:?set TIERLINE_OUTPUT_ROOT to the output.uri of the spec, for the retrain}"
fi

input="${TIERLINE_INPUT_ROOT%/}/${day}/"
job_id="nightly-${day}"
echo "submit-nightly: $TIERLINE_SPEC for $day, input $input" >&2
tierline submit "$TIERLINE_SPEC" --address "$TIERLINE_RAY_DASHBOARD" --input "$input" \
  --job-id "$job_id" --wait
[[ -n "${TIERLINE_ROUTER_URI:-}" ]] || exit 0

echo "submit-nightly: retraining $TIERLINE_ROUTER_URI from ${job_id}'s cascade verdicts" >&2
exec ray job submit --address "$TIERLINE_RAY_DASHBOARD" --submission-id "tierline-retrain-${day}" \
  -- tierline router train --run "${TIERLINE_OUTPUT_ROOT%/}/${job_id}" --cascade \
  --against "$TIERLINE_ROUTER_URI" --out "$TIERLINE_ROUTER_URI"
