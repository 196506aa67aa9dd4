//! `doctor --explain CODE`: the long story of each trap, as the seed write-up lived it.

use super::Code;

/// The long story of a code: what happens, why, how to fix it, what fixes it for you.
pub fn story(code: Code) -> &'static str {
    match code {
        Code::MasterService => "\
BB01 master-service: the master's Service does not expose the workers' port, or selects no master

What you see: workers log `Connection to master:9989 failed: Connection Refused` or
`User timeout caused connection failure`, and retry forever. The web UI works.

Why: workers connect to the master through a Service. A Service forwards only the ports it
lists, to the pods its selector picks. The seed's master Service listed 8080 (the web UI)
and not 9989 (Buildbot's worker protocol, `c['protocols']['pb']['port']`). A selector that
says `tier: master` while the pods say `role: master` (or `app: buildbot-master` against
`app: buildbot`) picks no pod at all, and the Service has no endpoints.

Fix: give the master's Service the pods' exact labels as its selector, and a port for the
workers:

    ports:
    - {name: web, port: 8080, targetPort: 8080}
    - {name: worker, port: 9989, targetPort: 9989}

Check with `kubectl get endpoints <service>`: it lists the master pod's IP with both ports.

Automatic: `kubectl buildbot deploy` creates the Service from the same labels as the pods,
with both ports.",
        Code::WorkerMasterAddress => "\
BB02 worker-master-address: BUILDMASTER or BUILDMASTER_PORT does not lead to the master

What you see: the worker logs `Connecting to buildbot:9989` and fails, or never connects.

Why: the official worker image writes buildbot.tac from BUILDMASTER (a host name),
BUILDMASTER_PORT (9989 unless set), WORKERNAME and WORKERPASS. In Kubernetes the host name
must be a Service (`name`, `name.namespace` or `name.namespace.svc...`) that selects the
master's pods and forwards BUILDMASTER_PORT to the port the master listens on for workers.
The seed's worker pointed at `buildbot` while the Service was `master`.

Fix: set BUILDMASTER to the master's Service name, and BUILDMASTER_PORT to a port of that
Service whose targetPort is the master's worker port.

Automatic: `kubectl buildbot deploy` sets both on its workers.",
        Code::DatabaseWait => "\
BB03 database-wait: the master cannot wait for its database

What you see: the master pod goes 1/1 Running, then CrashLoopBackOff. Its log says
`could not translate host name \"db\" to address`, `problem while upgrading!`, or
`The Buildmaster database needs to be upgraded`.

Why: Kubernetes has no docker-compose `depends_on`. The master and PostgreSQL start
together; `buildbot upgrade-master` fails while the database is not up, and a container
command that runs it once (or skips it) exits, so the kubelet restarts it with growing
backoff. A database URL whose host is not a Service name never resolves, however long the
master waits: the seed's URL said `@db/` and the Service was `postgres`.

Fix: point BUILDBOT_DB_URL at the database's Service, and retry the upgrade before starting:

    command: [sh, -c, 'until buildbot upgrade-master .; do sleep 2; done; exec twistd -ny buildbot.tac']

The official master image's start script already loops like this; keep it (do not set
`command`), or run the loop in an init container.

Automatic: `kubectl buildbot deploy` bundles PostgreSQL behind its own Service, and runs
upgrade-master in an init container that waits for it.",
        Code::VolumePermissions => "\
BB04 volume-permissions: root-owned hostPath or local volumes for a non-root container

What you see: builds fail with `Permission denied` writing their workdir; the master cannot
write its basedir. `ls -l` on the node shows the directory owned by root.

Why: a hostPath directory (and the claims of minikube, kind or the seed's volumes.yaml, which
are hostPath underneath) is created by the node as root with mode 0755. Buildbot's images run
as uid 1000. Kubernetes changes ownership to the pod's fsGroup only for volume types it
manages; hostPath is not one of them.

Fix: an init container that runs as root, mounts the volume and runs
`chown -R 1000:1000 <path>` before the app starts; or chown the directory on every node
(`minikube ssh -- sudo chown -R 1000:1000 /data/pv-3`, as the seed did by hand). For `local`
volumes, `securityContext.fsGroup: 1000` is enough.

Automatic: the admission webhook adds that init container to every Buildbot pod with such a
volume (`kubectl buildbot preview -f FILE` shows it).",
        Code::Autoscaler => "\
BB05 autoscaler: an autoscaler that can never compute its metric

What you see: `kubectl get hpa` shows `<unknown>/50%` forever, and
`kubectl describe hpa` says `missing request for cpu`. Workers never scale.

Why: CPU (or memory) utilisation is usage divided by the request, over every container of
the pod. A container without a request makes the utilisation undefined: the seed's
`kubectl autoscale deployment worker --cpu-percent=50` on workers with no requests. The
metric must also be served: resource metrics by metrics-server (APIService
v1beta1.metrics.k8s.io), external metrics by KEDA or an adapter.

Fix: set `resources.requests.cpu` (and memory) on every container of the target; install
metrics-server or KEDA. CPU is a poor signal for CI anyway: a queued build uses no CPU.

Automatic: the admission webhook sets requests on every Buildbot container;
`kubectl buildbot scale --auto --min A --max B` builds a correct HPA, and `--queue` scales on
Buildbot's own queue of unfinished build requests through KEDA.",
        Code::WorkerGrace => "\
BB06 worker-grace: workers are killed in the middle of a build

What you see: builds fail with `process killed by signal 15` whenever the autoscaler scales
down, a node is drained, or the workers roll out.

Why: to remove a pod, the kubelet sends SIGTERM and, after terminationGracePeriodSeconds
(30 s by default), SIGKILL. Nothing tells the master to stop giving the worker builds, and
nothing waits for the running one.

Fix: a preStop hook on the worker container that asks the master for a graceful stop of the
worker (the REST API's worker `stop` control: the worker takes no new build, finishes its
running one and disconnects), waits until it is disconnected, and a grace period as long as
your longest build (e.g. 3600 s).

Automatic: the admission webhook injects both into every worker pod;
`kubectl buildbot scale --workers N` drains the leaving workers before it scales down.",
        Code::GracefulStopReach => "\
BB07 graceful-stop-reach: the graceful-stop hook cannot reach the master

What you see: `kubectl describe pod` shows a FailedPreStopHook event, or the worker's log
ends with `ERROR: ... NOT drained`; the build is killed anyway.

Why: the hook finds the master's REST API at its argument (the policy's masterUrl), then
BUILDBOT_MASTER_URL, then BUILDMASTER with BUILDBOT_WEB_PORT, 8080 and 8010. If none of
those is a Service that forwards to the master's web port, it gives up after 30 s. If
master.cfg's authz restricts every control endpoint to a role, the anonymous stop is refused
with 403.

Fix: set BUILDBOT_MASTER_URL=http://<master Service>:<web port>/ on the workers (or
`gracefulStop.masterUrl` in the webhook's policy), expose the web port on the master's
Service, and let the worker stop control through authz.

Automatic: `kubectl buildbot deploy` exposes the web port and points the hook at it.",
        Code::WorkerNames => "\
BB08 worker-names: master.cfg and the pods disagree on worker names

What you see: the worker logs `unauthorized login; check worker name and password`, or only
one of several replicas attaches; builders wait for a worker forever.

Why: the master accepts a worker only under a name master.cfg declares
(`worker.Worker(\"name\", \"password\")`), and one connection per name. A Deployment scaled
to 5 with a literal WORKERNAME logs in five times as the same worker; a Deployment whose
WORKERNAME is its pod name gets random names no config can declare.

Fix: run workers as a StatefulSet with WORKERNAME from metadata.name (pods `<name>-0`,
`<name>-1`, ...), and declare those names, up to the most you will scale to, in master.cfg.

Automatic: `kubectl buildbot deploy` does exactly that (--max-workers slots).",
        Code::Webhook => "\
BB09 webhook: the admission webhook is missing, excludes the namespace, expires or is down

Why it matters: the webhook fixes BB04, BB05, BB06 and BB10 at pod creation for any Buildbot
pod, however it was applied. Not installed, or excluding the namespace (the chart's
excludeNamespaces, a namespace labelled kubectl-buildbot.dev/inject=false, its
objectSelector), it fixes nothing. With an expired CA the API server cannot call it; without
a ready endpoint it cannot answer. With failurePolicy Ignore pods are then created unfixed;
with Fail, no matched pod can be created at all.

Fix: `helm install buildbot-webhook charts/buildbot-webhook -n buildbot-system
--create-namespace`; `helm upgrade` after changing excludeNamespaces; renew the certificate by
deleting the chart's TLS Secret and upgrading, or enable cert-manager
(tls.certManager.enabled=true); check the webhook's pods and logs.",
        Code::PodHygiene => "\
BB10 pod-hygiene: requests a quota needs; root where the image does not need it

What you see: the workload has no pods, and `kubectl get events` shows FailedCreate with
`must specify requests.cpu` (a ResourceQuota on requests or limits refuses containers that
set none, unless a LimitRange fills in defaults). Or a Buildbot container runs as root.

Why: a quota on requests.cpu/memory (or limits) makes every container state them. Buildbot's
images run as uid 1000; running them as root (often to work around BB04) gives every build
root on the node through hostPath mounts.

Fix: set requests (and limits, if the quota has them) on every container, or add a
LimitRange with defaults; drop runAsUser: 0 and fix volume ownership the BB04 way.

Automatic: the admission webhook sets requests on every container of Buildbot pods (limits
are left to you or a LimitRange).",
        Code::OptedOut => "\
BB11 opted-out: an opted-out pod or namespace still has traps the webhook would fix

Why: the pod is annotated (or its namespace labelled) kubectl-buildbot.dev/inject=false, so
the admission webhook leaves it alone: that is your choice, and doctor reports it as info. The
finding lists the traps (BB04, BB05, BB06, BB10) that the webhook would otherwise fix.

Fix: fix each listed trap by hand, or remove the opt-out and recreate the pods.",
    }
}

/// Every code with its one-line title, for `--explain` without an argument.
pub fn index() -> String {
    Code::ALL
        .iter()
        .map(|c| {
            let first = story(*c).lines().next().unwrap_or_default();
            format!("{first}\n")
        })
        .collect()
}
