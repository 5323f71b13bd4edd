#!/bin/sh
# runquery.sh TABLE ADDRESS CLUSTER_NAME CLUSTER_UID INDEX
#
# Run `select * from TABLE;` with basequery + the remote-access kubequery extension against the
# cluster at ADDRESS and print kubequery's JSON (a list of row objects) on stdout. Exit non-zero on
# any failure, with basequery's stderr passed through.
#
#   TABLE         one of kubequery's 51 tables (checked against the list below)
#   ADDRESS       API server URL, https://host:port
#   CLUSTER_NAME  the cluster_name column ([a-z0-9-], 1-63 characters)
#   CLUSTER_UID   the cluster_uid column, or "" to let kubequery read the kube-system namespace uid
#   INDEX         a per-call number (digits) naming the extension socket, as the original runner did
#
# Environment (the ONLY way secrets come in: never an argument, never a file written here):
#   KUBEQUERY_TOKEN                      bearer token (required)
#   KUBEQUERY_CA_FILE                    PEM file of the cluster CA (default: system roots)
#   KUBEQUERY_TLS_SERVER_NAME            TLS server name to verify, if not the ADDRESS host
#   KUBEQUERY_INSECURE_SKIP_TLS_VERIFY   "1" to skip TLS verification (explicit opt-in)
#   KQ_BASEQUERY                         basequery binary (default: basequery on PATH, then
#                                        /opt/uptycs/bin/basequery)
#   KQ_KUBEQUERY_FLAGFILE, KQ_KUBEQUERY_AUTOLOAD   basequery flag file and extensions autoload file
#                                        (default: kubequery.flags / autoload.exts beside this script)
#   TMPDIR                               where the private per-call directory is made (and removed)
set -eu

die() {
    echo "runquery: $*" >&2
    exit 2
}

[ $# -eq 5 ] || die "usage: runquery.sh TABLE ADDRESS CLUSTER_NAME CLUSTER_UID INDEX (token in KUBEQUERY_TOKEN)"
TABLE=$1
ADDRESS=$2
CLUSTER_NAME=$3
CLUSTER_UID=$4
INDEX=$5

# kubequery's 51 tables (kq_pipeline.registry.KUBEQUERY_TABLES; a test keeps the two lists equal).
TABLES='
kubernetes_mutating_webhooks
kubernetes_validating_webhooks
kubernetes_daemon_sets
kubernetes_daemon_set_containers
kubernetes_daemon_set_volumes
kubernetes_deployments
kubernetes_deployments_containers
kubernetes_deployments_volumes
kubernetes_replica_sets
kubernetes_replica_set_containers
kubernetes_replica_set_volumes
kubernetes_stateful_sets
kubernetes_stateful_set_containers
kubernetes_stateful_set_volumes
kubernetes_horizontal_pod_autoscalers
kubernetes_cron_jobs
kubernetes_jobs
kubernetes_component_statuses
kubernetes_config_maps
kubernetes_endpoint_subsets
kubernetes_limit_ranges
kubernetes_namespaces
kubernetes_nodes
kubernetes_persistent_volume_claims
kubernetes_persistent_volumes
kubernetes_pod_templates
kubernetes_pod_template_containers
kubernetes_pod_templates_volumes
kubernetes_pods
kubernetes_pod_containers
kubernetes_pod_volumes
kubernetes_resource_quotas
kubernetes_secrets
kubernetes_service_accounts
kubernetes_services
kubernetes_api_resources
kubernetes_info
kubernetes_events
kubernetes_ingress_classes
kubernetes_ingresses
kubernetes_network_policies
kubernetes_pod_disruption_budgets
kubernetes_pod_security_policies
kubernetes_cluster_role_binding_subjects
kubernetes_cluster_role_policy_rules
kubernetes_role_binding_subjects
kubernetes_role_policy_rules
kubernetes_csi_drivers
kubernetes_csi_node_drivers
kubernetes_storage_classes
kubernetes_volume_attachments
'

known=0
for t in $TABLES; do
    if [ "$t" = "$TABLE" ]; then
        known=1
    fi
done
[ "$known" = 1 ] || die "table '$TABLE' is not one of kubequery's 51 tables"

case $ADDRESS in
    https://?* | http://?*) ;;
    *) die "cluster address must be an http(s) URL" ;;
esac
case $ADDRESS in
    *[!]A-Za-z0-9.:/_%[-]*) die "cluster address has characters a URL host:port cannot have" ;;
esac
case $CLUSTER_NAME in
    '' | -* | *- | *[!a-z0-9-]*) die "cluster name must be [a-z0-9-], starting and ending with a letter or digit" ;;
esac
[ ${#CLUSTER_NAME} -le 63 ] || die "cluster name is longer than 63 characters"
case $CLUSTER_UID in
    *[!A-Za-z0-9-]*) die "cluster uid must be letters, digits and '-'" ;;
esac
case $INDEX in
    '' | *[!0-9]*) die "index must be digits" ;;
esac
[ -n "${KUBEQUERY_TOKEN:-}" ] || die "KUBEQUERY_TOKEN is not set"
if [ -n "${KUBEQUERY_CA_FILE:-}" ] && [ ! -r "$KUBEQUERY_CA_FILE" ]; then
    die "CA file $KUBEQUERY_CA_FILE is not readable"
fi

HERE=$(cd "$(dirname "$0")" && pwd)
FLAGFILE=${KQ_KUBEQUERY_FLAGFILE:-$HERE/kubequery.flags}
AUTOLOAD=${KQ_KUBEQUERY_AUTOLOAD:-$HERE/autoload.exts}
BASEQUERY=${KQ_BASEQUERY:-}
if [ -z "$BASEQUERY" ]; then
    BASEQUERY=$(command -v basequery || true)
    [ -n "$BASEQUERY" ] || BASEQUERY=/opt/uptycs/bin/basequery
fi
[ -x "$BASEQUERY" ] || die "basequery not found or not executable: $BASEQUERY (set KQ_BASEQUERY)"
[ -r "$FLAGFILE" ] || die "flag file not readable: $FLAGFILE"
[ -r "$AUTOLOAD" ] || die "extensions autoload file not readable: $AUTOLOAD"

# A private directory (mode 0700) for the extension socket, removed on every exit path.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kq-runquery.XXXXXX")
cleanup() {
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'cleanup; exit 143' TERM
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 129' HUP

# What the remote-access patch reads (see README.md). The token is already in the environment.
KUBEQUERY_ADDR=$ADDRESS
KUBEQUERY_CLUSTER_NAME=$CLUSTER_NAME
export KUBEQUERY_ADDR KUBEQUERY_CLUSTER_NAME
if [ -n "$CLUSTER_UID" ]; then
    KUBEQUERY_CLUSTER_UID=$CLUSTER_UID
    export KUBEQUERY_CLUSTER_UID
fi

set +e
printf 'select * from %s;\n' "$TABLE" | "$BASEQUERY" \
    --flagfile="$FLAGFILE" \
    --extensions_socket="$WORK/kubequery.$INDEX.em" \
    --extensions_autoload="$AUTOLOAD" \
    --extensions_require=kubequery \
    --disable_database \
    --json \
    -S
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
    echo "runquery: basequery exited with code $rc for table $TABLE of cluster $CLUSTER_NAME" >&2
fi
exit "$rc"
