//! `kubectl-buildbot preview` on large YAML streams: 1,000 and 10,000 objects of a realistic
//! mix; the ratio of the two shows whether it stays linear.
//! `cargo bench -p kubectl-buildbot --bench preview`

use std::hint::black_box;

use buildbot_policy::Policy;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kubectl_buildbot::preview::preview;

/// `n` objects cycling through a worker Deployment, a master StatefulSet, a Service and a
/// plain Pod.
fn stream(n: usize) -> String {
    let kinds = [
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: worker-NUM}\nspec:\n  selector: {matchLabels: {app: buildbot, tier: worker}}\n  template:\n    metadata: {labels: {app: buildbot, tier: worker}}\n    spec:\n      containers:\n      - name: worker\n        image: buildbot/buildbot-worker:master\n        env: [{name: BUILDMASTER, value: master}]\n        volumeMounts: [{name: data, mountPath: /buildbot}]\n      volumes: [{name: data, hostPath: {path: /data}}]\n",
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: master-NUM}\nspec:\n  serviceName: master\n  selector: {matchLabels: {app: buildbot, tier: master}}\n  template:\n    metadata: {labels: {app: buildbot, tier: master}}\n    spec:\n      containers: [{name: master, image: buildbot/buildbot-master:master, volumeMounts: [{name: data, mountPath: /var/lib/buildbot}]}]\n  volumeClaimTemplates: [{metadata: {name: data}, spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}]\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: svc-NUM}\nspec: {selector: {app: buildbot}, ports: [{port: 8080}]}\n",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web-NUM}\nspec: {containers: [{name: nginx, image: nginx}]}\n",
    ];
    (0..n)
        .map(|i| {
            format!(
                "---\n{}",
                kinds[i % kinds.len()].replace("NUM", &i.to_string())
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let policy = Policy::default();
    let mut group = c.benchmark_group("preview");
    group.sample_size(10);
    for n in [1_000, 10_000] {
        let text = stream(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{n} objects"), |b| {
            b.iter(|| preview(black_box(&text), "bench.yaml", &policy).unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
