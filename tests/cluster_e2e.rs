//! deploy, wait until Ready, status, a converging redeploy, delete --purge, in a namespace of
//! its own, through the library the binary uses.
//!
//! By default on the test suite's own control plane (`.ci/controlplane`: a real API server and
//! controllers; kwok runs the pods, so Buildbot itself does not run there). With KUBECONFIG on
//! a local test cluster (a context named kind-*, minikube, k3d-* or docker-desktop), or on any
//! cluster with KUBECTL_BUILDBOT_E2E=1, it runs there instead, and also waits until Buildbot
//! sees its worker connected. It never deploys into whatever other context a developer has.
//! Example: `kind create cluster && KUBECONFIG=~/.kube/config cargo test -p e2e-tests --test cluster_e2e -- --nocapture`.

use std::path::PathBuf;
use std::time::Duration;

use e2e_tests::controlplane::ControlPlane;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kubectl_buildbot::cluster::Cluster;
use kubectl_buildbot::commands::{delete, deploy, status};
use kubectl_buildbot::deploy::DeploySpec;
use kubectl_buildbot::progress::Lines;

/// A real cluster the developer pointed at, if any.
fn real_cluster() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("KUBECONFIG")?);
    let text = std::fs::read_to_string(&path).ok()?;
    let context = text
        .lines()
        .find_map(|l| l.strip_prefix("current-context:"))
        .map(|c| c.trim().trim_matches('"').to_string())?;
    let local = ["kind-", "minikube", "k3d-", "docker-desktop"]
        .iter()
        .any(|p| context.starts_with(p));
    (local || std::env::var("KUBECTL_BUILDBOT_E2E").as_deref() == Ok("1")).then_some(path)
}

#[tokio::test]
async fn deploy_status_and_delete_on_a_real_cluster() {
    let real = real_cluster();
    let kubeconfig = match &real {
        Some(path) => path.clone(),
        None => {
            let plane = tokio::task::spawn_blocking(ControlPlane::shared)
                .await
                .unwrap();
            plane.kubeconfig().to_path_buf()
        }
    };
    let namespace = format!("kbb-e2e-{}", std::process::id());
    let cluster = Cluster::connect(Some(&kubeconfig), None, Some(&namespace))
        .await
        .expect("connect");
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create the test namespace");

    let spec = DeploySpec::new("e2e", &namespace);
    let existing = deploy::discover(&cluster, &spec).await.unwrap();
    let deploy::Reconciled { spec, secrets, .. } =
        deploy::reconcile(spec, Some(1), None, existing).unwrap();
    let (objects, _) = deploy::objects(&spec, &secrets);
    deploy::apply_all(&cluster, &objects, false)
        .await
        .expect("apply");
    deploy::wait_ready(
        &cluster,
        &spec,
        Duration::from_secs(600),
        Duration::from_secs(3),
        &mut Lines(std::io::stderr()),
    )
    .await
    .expect("Buildbot becomes Ready");

    let st = status::assemble(&spec, status::collect(&cluster, &spec).await.unwrap());
    assert!(
        st.components
            .iter()
            .all(|c| c.exists && c.ready >= c.wanted),
        "{:?}",
        st.components
    );
    if real.is_some() {
        let mut connected = false;
        for _ in 0..60 {
            let st = status::assemble(&spec, status::collect(&cluster, &spec).await.unwrap());
            if st
                .buildbot
                .as_ref()
                .is_some_and(|b| b.workers_connected.contains(&"e2e-worker-0".to_string()))
            {
                connected = true;
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        assert!(connected, "e2e-worker-0 connects to the master");
    } else {
        eprintln!("on the test control plane kwok runs the pods without executing them: Buildbot's own connection is proved by tests/buildbot_real.rs and tests/graceful_stop.rs");
    }

    // Deploying again converges: same passwords, nothing to change.
    let existing = deploy::discover(&cluster, &spec).await.unwrap();
    assert_eq!(existing.secrets, secrets);

    let deleted = delete::delete(&cluster, &spec, true)
        .await
        .expect("delete --purge");
    assert!(deleted.deleted.contains(&"deployment/e2e".to_string()));
    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .expect("delete the test namespace");
}
