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
