//! `kubectl-buildbot doctor` on 1,000 and 10,000 objects: the seed's whole setup (Services,
//! claims, hostPath volumes, master, workers, HPA) repeated, first across 100 namespaces,
//! then all in one namespace (where every check compares every Service with every
//! workload). The ratio of 10,000 to 1,000 shows whether it stays linear.
//! `cargo bench -p kubectl-buildbot --bench doctor`

use std::hint::black_box;

use buildbot_policy::Policy;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kubectl_buildbot::doctor::{diagnose, Context};
use kubectl_buildbot::preview::parse_stream;

/// The seed setup, 10 objects, names suffixed with `NUM`, in namespace `NS`.
const SEED: &str = "
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-NUM}
spec: {capacity: {storage: 20Gi}, accessModes: [ReadWriteOnce], hostPath: {path: /data/pv-NUM}}
---
apiVersion: v1
kind: Service
metadata: {name: master-NUM, namespace: NS}
spec: {ports: [{port: 8080}], selector: {app: buildbot, tier: master, set: sNUM}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: master-NUM, namespace: NS}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 20Gi}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: master-NUM, namespace: NS}
spec:
  selector: {matchLabels: {app: buildbot, tier: master, set: sNUM}}
  template:
    metadata: {labels: {app: buildbot, tier: master, set: sNUM}}
    spec:
      containers:
      - name: master
        image: buildbot/buildbot-master:master
        env:
        - {name: BUILDBOT_WORKER_PORT, value: '9989'}
        - {name: BUILDBOT_DB_URL, value: 'postgresql+psycopg2://buildbot:change_me@db-NUM/buildbot'}
        volumeMounts: [{name: data, mountPath: /var/lib/buildbot}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: master-NUM}}]
---
apiVersion: v1
kind: Service
metadata: {name: worker-NUM, namespace: NS}
spec: {ports: [{port: 9989}], selector: {app: buildbot, tier: worker, set: sNUM}, clusterIP: None}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: worker-NUM, namespace: NS}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 20Gi}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker-NUM, namespace: NS}
spec:
  selector: {matchLabels: {app: buildbot, tier: worker, set: sNUM}}
  template:
    metadata: {labels: {app: buildbot, tier: worker, set: sNUM}}
    spec:
      containers:
      - name: worker
        image: buildbot/buildbot-worker:master
        env:
        - {name: BUILDMASTER, value: master-NUM}
        - {name: WORKERNAME, value: example-worker}
        volumeMounts: [{name: data, mountPath: /buildbot}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: worker-NUM}}]
---
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {name: worker-NUM, namespace: NS}
spec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: worker-NUM}, maxReplicas: 5, targetCPUUtilizationPercentage: 50}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings-NUM, namespace: NS}
data: {a: b}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web-NUM, namespace: NS}
spec: {}
";

fn stream(n: usize, namespaces: usize) -> String {
    (0..n / 10)
        .map(|i| {
            let ns = format!("ns-{}", i % namespaces);
            format!(
                "---\n{}",
                SEED.replace("NUM", &i.to_string()).replace("NS", &ns)
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let policy = Policy::default();
    let ctx = Context {
        policy: &policy,
        now: 1_800_000_000,
    };
    let mut group = c.benchmark_group("doctor");
    group.sample_size(10);
    for (n, namespaces) in [(1_000, 100), (10_000, 100), (1_000, 1), (10_000, 1)] {
        let objects = parse_stream(&stream(n, namespaces), "bench.yaml").unwrap();
        assert_eq!(objects.len(), n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{n} objects in {namespaces} namespaces"), |b| {
            b.iter(|| diagnose(black_box(&objects), "default", false, &ctx).unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
