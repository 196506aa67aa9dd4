# kubectl-buildbot graceful worker stop, run as the worker container's preStop hook.
# Asks the Buildbot master to stop this worker gracefully (no new builds; the master shuts
# the worker down once its running build ends), then waits until the master no longer sees
# it connected, so Kubernetes sends SIGTERM only after the build has finished.
# Master URL: argv[1], else $BUILDBOT_MASTER_URL, else http://$BUILDMASTER:$BUILDBOT_WEB_PORT/
# (port 8010 by default). Worker name: $WORKERNAME, else the hostname (StatefulSet pod name).
# $BUILDBOT_WEB_AUTH=user:password adds basic authentication when the web UI has authz.
import base64, json, os, socket, sys, time, urllib.error, urllib.parse, urllib.request

def log(msg):
    print("kubectl-buildbot preStop: " + msg, flush=True)

def call(url, body=None):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    auth = os.environ.get("BUILDBOT_WEB_AUTH")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")

def main(argv):
    env = os.environ
    base = (argv[1] if len(argv) > 1 else "") or env.get("BUILDBOT_MASTER_URL", "")
    if not base:
        if not env.get("BUILDMASTER"):
            log("neither BUILDBOT_MASTER_URL nor BUILDMASTER is set: nothing to drain")
            return 0
        base = "http://%s:%s/" % (env["BUILDMASTER"], env.get("BUILDBOT_WEB_PORT", "8010"))
    name = env.get("WORKERNAME") or socket.gethostname()
    # Buildbot's pattern /workers/i:name takes the name as the path segment itself.
    url = base.rstrip("/") + "/api/v2/workers/" + urllib.parse.quote(name, safe="")
    body = json.dumps({"jsonrpc": "2.0", "method": "stop", "id": 1,
                       "params": {"reason": "pod terminating (kubectl-buildbot preStop)"}}).encode()
    unreachable_since = None
    asked = False
    while True:
        try:
            if not asked:
                call(url, body)
                asked = True
                log("asked %s to stop worker %s gracefully" % (base, name))
            workers = call(url).get("workers", [])
            unreachable_since = None
            if not workers or not workers[0].get("connected_to"):
                log("worker %s is no longer connected: done" % name)
                return 0
        except urllib.error.HTTPError as e:
            if e.code == 404:
                log("master does not know worker %s: nothing to drain" % name)
                return 0
            if e.code in (401, 403):
                log("master refused the stop control (%s): allow it for workers or set "
                    "BUILDBOT_WEB_AUTH" % e.code)
                return 1
            log("master answered %s %s; retrying" % (e.code, e.reason))
        except Exception as e:  # the master may be restarting: retry for a while
            unreachable_since = unreachable_since or time.time()
            if time.time() - unreachable_since > 60:
                log("master unreachable for 60s (%s): giving up" % e)
                return 1
        time.sleep(2)

sys.exit(main(sys.argv))
