# kubectl-buildbot graceful worker stop: the worker container's preStop hook.
# Asks the Buildbot master to stop this worker gracefully (no new builds; the master
# disconnects it once its running build ends), then waits until it is disconnected, so
# that SIGTERM comes only after the build, or when the pod's grace period runs out.
# The master's REST API is the first of these that answers as Buildbot's:
#   argv[1] (the policy's masterUrl), $BUILDBOT_MASTER_URL,
#   http://$BUILDMASTER:$BUILDBOT_WEB_PORT/, http://$BUILDMASTER:8080/ (official images),
#   http://$BUILDMASTER:8010/ (Buildbot's sample master.cfg).
# Worker name: $WORKERNAME, else the hostname. $BUILDBOT_WEB_AUTH=user:password for authz.
import base64, json, os, socket, sys, time, urllib.error, urllib.parse, urllib.request

def log(msg):
    print('kubectl-buildbot preStop: ' + msg, flush=True)

def call(url, body=None, timeout=10):
    req = urllib.request.Request(url, data=body, headers={'Content-Type': 'application/json'})
    auth = os.environ.get('BUILDBOT_WEB_AUTH')
    if auth:
        req.add_header('Authorization', 'Basic ' + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"{}")

def candidates(argv, env):
    urls = [argv[1] if len(argv) > 1 else '', env.get('BUILDBOT_MASTER_URL', '')]
    if env.get('BUILDMASTER'):
        ports = [env.get('BUILDBOT_WEB_PORT'), '8080', '8010']
        urls += ['http://%s:%s/' % (env['BUILDMASTER'], p) for p in ports if p]
    out = []
    for u in urls:
        if u and u.rstrip('/') + '/' not in out:
            out.append(u.rstrip('/') + '/')
    return out

def discover(bases, name):
    """(base, known): the first base whose /api/v2/workers answers as Buildbot's, and
    whether that master knows this worker; (None, False) when none answers."""
    for base in bases:
        try:
            workers = call(base + 'api/v2/workers', timeout=5).get('workers')
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                return base, True  # Buildbot with authz: the stop call says what to do
            continue
        except Exception:
            continue
        if isinstance(workers, list):
            return base, any(w.get('name') == name for w in workers)
    return None, False

def main(argv):
    env = os.environ
    name = env.get('WORKERNAME') or socket.gethostname()
    bases = candidates(argv, env)
    if not bases:
        log('neither BUILDBOT_MASTER_URL nor BUILDMASTER is set: nothing to drain')
        return 0
    deadline = time.time() + 30  # the master may be restarting
    base, known = discover(bases, name)
    while base is None and time.time() < deadline:
        time.sleep(2)
        base, known = discover(bases, name)
    if base is None:
        log('ERROR: no Buildbot REST API answered at %s; worker %s was NOT drained and its '
            'running build will be killed. Set BUILDBOT_MASTER_URL on the worker container '
            "(or the webhook policy's gracefulStop.masterUrl) to the master's web URL, "
            'e.g. http://buildbot:8080/' % (', '.join(bases), name))
        return 1
    if not known:
        log('the master at %s does not know worker %s: nothing to drain' % (base, name))
        return 0
    log('using the master at %s' % base)
    url = base + 'api/v2/workers/' + urllib.parse.quote(name, safe='')
    body = json.dumps({'jsonrpc': '2.0', 'method': 'stop', 'id': 1,
                       'params': {'reason': 'pod terminating (kubectl-buildbot preStop)'}}).encode()
    asked, complained = False, 0.0
    # Once asked, wait as long as the pod's grace allows: the kubelet ends this hook then.
    while True:
        try:
            if not asked:
                call(url, body)
                asked = True
                log('asked the master to stop worker %s gracefully; waiting for its build' % name)
            workers = call(url).get('workers', [])
            if not workers or not workers[0].get('connected_to'):
                log('worker %s is no longer connected: done' % name)
                return 0
        except urllib.error.HTTPError as e:
            if e.code == 404:
                log('the master no longer knows worker %s: done' % name)
                return 0
            if e.code in (401, 403):
                log('ERROR: the master refused the stop control (%s); worker %s was NOT '
                    'drained: allow it for workers or set BUILDBOT_WEB_AUTH' % (e.code, name))
                return 1
            err = '%s %s' % (e.code, e.reason)
        except Exception as e:
            err = str(e)
        else:
            err = None
        if err and time.time() - complained > 60:
            log('master at %s: %s; still waiting' % (base, err))
            complained = time.time()
        time.sleep(2)

sys.exit(main(sys.argv))
