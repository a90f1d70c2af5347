#!/bin/sh
# Register Waybill's custom search attributes (all Keyword) on a Temporal namespace.
#
# Idempotent: attributes that already exist as Keyword are left alone; one that exists with another
# type is an error (rename or drop it by hand). Used by the `temporal-search-attributes` service in
# docker-compose.yml and runnable by hand against any cluster with the `temporal` CLI on PATH:
#
#   TEMPORAL_ADDRESS=temporal.example.com:7233 TEMPORAL_NAMESPACE=waybill \
#     sh deploy/temporal/register-search-attributes.sh
#
# TLS / API keys: the `temporal` CLI reads TEMPORAL_TLS_CERT, TEMPORAL_TLS_KEY, TEMPORAL_TLS_CA,
# TEMPORAL_API_KEY etc. from the environment, so export those as well.
# The names must match domain/search_attributes.py (a unit test checks this).
set -eu

: "${TEMPORAL_ADDRESS:=127.0.0.1:7233}"
: "${TEMPORAL_NAMESPACE:=default}"
: "${WAIT_SECONDS:=300}"
export TEMPORAL_ADDRESS TEMPORAL_NAMESPACE

ATTRIBUTES="WaybillOrganizationId WaybillDeliveryStatus WaybillVehicleId WaybillDriverId WaybillDepotId WaybillExternalRef"

waited=0
until temporal operator namespace describe --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1; do
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
        echo "namespace '$TEMPORAL_NAMESPACE' not reachable at $TEMPORAL_ADDRESS after ${WAIT_SECONDS}s" >&2
        temporal operator namespace describe --namespace "$TEMPORAL_NAMESPACE" >&2 || true
        exit 1
    fi
    echo "waiting for namespace '$TEMPORAL_NAMESPACE' at $TEMPORAL_ADDRESS ..."
    sleep 2
    waited=$((waited + 2))
done

existing="$(temporal operator search-attribute list --namespace "$TEMPORAL_NAMESPACE")"

status=0
for name in $ATTRIBUTES; do
    line="$(printf '%s\n' "$existing" | grep -w -- "$name" || true)"
    if [ -z "$line" ]; then
        temporal operator search-attribute create --namespace "$TEMPORAL_NAMESPACE" --name "$name" --type Keyword
        echo "created $name (Keyword)"
    elif printf '%s\n' "$line" | grep -qw Keyword; then
        echo "exists  $name (Keyword)"
    else
        echo "error: $name exists with another type: $line" >&2
        status=1
    fi
done

[ "$status" -eq 0 ] && echo "search attributes ready on namespace '$TEMPORAL_NAMESPACE'"
exit "$status"
