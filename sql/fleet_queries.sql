-- Example fleet queries over the kq-pipeline schema (sql/schema.sql).
-- The first two are the original kubequery-aggregator's published examples, unchanged in meaning.

-- Namespaces and pods per cluster.
SELECT cluster_name, count(DISTINCT namespace) AS ns_count, count(*) AS pod_cnt
FROM kubernetes_pods
GROUP BY cluster_name
ORDER BY cluster_name;

-- Most used container images across the fleet.
SELECT c.image, count(*) AS pod_cnt
FROM kubernetes_pod_containers c
GROUP BY c.image
ORDER BY count(*) DESC, c.image
LIMIT 10;

-- Pods carrying a label, in every cluster (jsonb containment: served by the GIN index on labels).
SELECT cluster_name, namespace, name
FROM kubernetes_pods
WHERE labels @> '{"app": "coredns"}'
ORDER BY cluster_name, namespace, name;

-- Privileged containers. kubequery's flags are 0/1 integers, not booleans: compare with = 1.
SELECT cluster_name, namespace, pod_name, name AS container, image
FROM kubernetes_pod_containers
WHERE privileged = 1
ORDER BY cluster_name, namespace, pod_name, name;

-- Pods sharing their node's network namespace, per cluster (another 0/1 flag).
SELECT cluster_name, count(*) AS host_network_pods
FROM kubernetes_pods
WHERE host_network = 1
GROUP BY cluster_name
ORDER BY cluster_name;

-- The ten oldest running pods. kubequery's timestamps are epoch seconds: to_timestamp() makes
-- them timestamptz.
SELECT cluster_name, namespace, name, to_timestamp(creation_timestamp) AS created_at,
       date_trunc('second', now() - to_timestamp(creation_timestamp)) AS age
FROM kubernetes_pods
WHERE phase = 'Running'
ORDER BY creation_timestamp, cluster_name, namespace, name
LIMIT 10;

-- Pods per node with each node's kubelet version (pods joined to nodes on cluster and node name).
SELECT n.cluster_name, n.name AS node, n.node_info ->> 'kubeletVersion' AS kubelet_version,
       count(p.uid) AS pod_cnt
FROM kubernetes_nodes n
LEFT JOIN kubernetes_pods p ON p.cluster_name = n.cluster_name AND p.node_name = n.name
GROUP BY n.cluster_name, n.name, n.node_info ->> 'kubeletVersion'
ORDER BY n.cluster_name, n.name;

-- Freshness: when each cluster's tables were last loaded, and whether that load failed.
SELECT cluster_name, table_name, status, rows_loaded, finished_at, error
FROM kq_latest_loads
ORDER BY cluster_name, table_name;

-- cert-manager Certificates that expire within 14 days (or already have), across the fleet.
-- Custom objects keep spec and status as jsonb: notAfter is an RFC 3339 string in status.
SELECT cluster_name, namespace, name, spec ->> 'secretName' AS secret,
       spec -> 'issuerRef' ->> 'name' AS issuer,
       (status ->> 'notAfter')::timestamptz AS not_after
FROM kubernetes_custom_resources
WHERE api_group = 'cert-manager.io' AND kind = 'Certificate'
  AND (status ->> 'notAfter')::timestamptz < now() + interval '14 days'
ORDER BY not_after, cluster_name, namespace, name;

-- Argo CD Applications out of sync, per cluster, with their health and the revision they are at.
SELECT cluster_name, namespace, name, spec ->> 'project' AS project,
       status -> 'health' ->> 'status' AS health, status -> 'sync' ->> 'revision' AS revision
FROM kubernetes_custom_resources
WHERE api_group = 'argoproj.io' AND kind = 'Application'
  AND status -> 'sync' ->> 'status' = 'OutOfSync'
ORDER BY cluster_name, namespace, name;

-- Custom objects per cluster and kind, next to the kinds each cluster's CRDs define.
SELECT d.cluster_name, d."group", d.kind, d.established, count(r.uid) AS objects
FROM kubernetes_custom_resource_definitions d
LEFT JOIN kubernetes_custom_resources r
  ON r.cluster_name = d.cluster_name AND r.api_group = d."group" AND r.kind = d.kind
GROUP BY d.cluster_name, d."group", d.kind, d.established
ORDER BY d.cluster_name, d."group", d.kind;

-- History: the fleet's pods as they were 5 minutes ago (as-of; any timestamptz works).
SELECT cluster_name, namespace, name, node_name, phase
FROM history.kubernetes_pods
WHERE valid_from <= now() - interval '5 minutes'
  AND (valid_to IS NULL OR valid_to > now() - interval '5 minutes')
ORDER BY cluster_name, namespace, name;

-- History: deployments whose container image changed in the last 24 hours, from what to what
-- (the closed row and its successor share the container's key and meet at the load's time).
SELECT d.cluster_name, d.namespace, d.name AS deployment, c.name AS container,
       o.image AS old_image, c.image AS new_image, c.valid_from AS changed_at
FROM history.kubernetes_deployments_containers c
JOIN history.kubernetes_deployments_containers o
  ON o.cluster_name = c.cluster_name AND o.uid = c.uid AND o.name = c.name AND o.valid_to = c.valid_from
JOIN kubernetes_deployments d ON d.cluster_name = c.cluster_name AND d.uid = c.uid
WHERE c.valid_from > now() - interval '24 hours' AND o.image IS DISTINCT FROM c.image
ORDER BY changed_at DESC, d.cluster_name, d.namespace, d.name;

-- History: what changed per cluster and table in the last 24 hours (the change feed, counted).
SELECT cluster_name, table_name,
       count(*) FILTER (WHERE change = 'added') AS added,
       count(*) FILTER (WHERE change = 'removed') AS removed,
       count(*) FILTER (WHERE change = 'modified') AS modified
FROM history.changes
WHERE at > now() - interval '24 hours'
GROUP BY cluster_name, table_name
ORDER BY cluster_name, table_name;

-- History: pods deleted in the last 7 days, per cluster and namespace.
SELECT cluster_name, namespace, count(*) AS pods_deleted
FROM history.changes
WHERE table_name = 'kubernetes_pods' AND change = 'removed' AND at > now() - interval '7 days'
GROUP BY cluster_name, namespace
ORDER BY pods_deleted DESC, cluster_name, namespace;

-- History: when each node joined (as far back as the history goes) and, if it is gone, when it left.
SELECT cluster_name, name, min(valid_from) AS first_seen,
       CASE WHEN bool_or(valid_to IS NULL) THEN NULL ELSE max(valid_to) END AS gone_at
FROM history.kubernetes_nodes
GROUP BY cluster_name, name
ORDER BY first_seen DESC, cluster_name, name;
