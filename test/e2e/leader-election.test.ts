import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { clusterPaths } from '../../cluster/paths.ts';
import type { KubeApi } from '../../lib/kube/kube-api.ts';
import { loadKubeConfig } from '../../lib/kube/kube-config.ts';
import { DEFAULT_LEASE_NAME, LeaderElector, electionIdentity } from '../../controller/leader-election.ts';
import { eventually, kubectl, requireCluster, testNamespace } from '../support/kube.ts';

interface Candidate {
  name: string;
  elector: LeaderElector;
  /** One entry per term: its signal, and whether onStoppedLeading ran for it. */
  terms: { signal: AbortSignal; stopped: boolean }[];
  logs: string[];
}

/**
 * A TCP relay to the API server that can be switched to a black hole: connections stay open but nothing
 * gets through, as when the network to the API server fails (requests hang rather than fail).
 */
async function apiRelay(target: URL): Promise<{ url: string; blackHole: () => void; close: () => void }> {
  const clients = new Set<Socket>();
  const upstreams = new Set<Socket>();
  let dark = false;
  const track = (set: Set<Socket>, socket: Socket): void => {
    set.add(socket);
    socket.on('close', () => set.delete(socket)).on('error', () => socket.destroy());
  };
  const server: Server = createServer((client) => {
    track(clients, client);
    if (dark) {
      client.resume();
      return;
    }
    const upstream = connect(Number(target.port || 443), target.hostname);
    track(upstreams, upstream);
    client.pipe(upstream).pipe(client);
    upstream.on('close', () => {
      if (!dark) client.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `https://127.0.0.1:${port}`,
    blackHole: () => {
      dark = true;
      for (const upstream of upstreams) upstream.destroy();
      // Clients keep their connections; what they send is read and dropped.
      for (const client of clients) client.unpipe().resume();
    },
    close: () => {
      server.close();
      for (const socket of [...clients, ...upstreams]) socket.destroy();
    },
  };
}

interface LeaseJson {
  spec: { holderIdentity?: string; leaseDurationSeconds?: number; leaseTransitions?: number };
}

describe('leader election on the local cluster', function () {
  this.timeout(120_000);
  let ns: Awaited<ReturnType<typeof testNamespace>> | undefined;
  let api: KubeApi;
  /** The candidates of the running test (each test elects on a lease of its own); stopped after it. */
  let candidates: Candidate[] = [];
  /** Who leads right now, by the callbacks, and the most that ever led at once, in the running test. */
  const leading = new Set<string>();
  let peakLeaders = 0;
  let relay: Awaited<ReturnType<typeof apiRelay>> | undefined;

  function candidate(name: string, leaseName: string): Candidate {
    const terms: Candidate['terms'] = [];
    const logs: string[] = [];
    const elector = new LeaderElector({
      api,
      namespace: ns!.name,
      leaseName,
      identity: electionIdentity(name),
      log: (message) => logs.push(message),
      onStartedLeading: (signal) => {
        leading.add(name);
        peakLeaders = Math.max(peakLeaders, leading.size);
        terms.push({ signal, stopped: false });
      },
      onStoppedLeading: () => {
        leading.delete(name);
        const term = terms.at(-1);
        if (term) term.stopped = true;
      },
    });
    const c = { name, elector, terms, logs };
    candidates.push(c);
    return c;
  }

  const leaders = (): Candidate[] => candidates.filter((c) => c.elector.isLeader);

  async function readLease(leaseName: string): Promise<LeaseJson> {
    const { stdout } = await kubectl(['-n', ns!.name, 'get', 'lease', leaseName, '-o', 'json']);
    return JSON.parse(stdout) as LeaseJson;
  }

  async function waitForLeader(what: string, not?: Candidate, timeoutMs = 30_000): Promise<Candidate> {
    return eventually(
      what,
      () => {
        const now = leaders();
        return Promise.resolve(now.length === 1 && now[0] !== not ? now[0] : undefined);
      },
      timeoutMs,
    );
  }

  /** Two candidates racing for a new lease, once one of them leads. */
  async function elected(leaseName: string): Promise<{ first: Candidate; second: Candidate }> {
    const a = candidate('controller-a', leaseName);
    const b = candidate('controller-b', leaseName);
    a.elector.start();
    b.elector.start();
    const first = await waitForLeader('a leader is elected');
    return { first, second: first === a ? b : a };
  }

  before(async () => {
    await requireCluster();
    api = loadKubeConfig({ kubeconfigPath: clusterPaths().kubeconfig }).api;
    ns = await testNamespace('lease');
  });

  beforeEach(() => {
    candidates = [];
    leading.clear();
    peakLeaders = 0;
  });

  afterEach(async () => {
    await Promise.all(candidates.map((c) => c.elector.stop()));
    relay?.close();
    relay = undefined;
  });

  after(async () => {
    if (ns && process.env.KEEP_NAMESPACE !== '1') await ns.delete();
  });

  it('two electors racing for a new lease: exactly one leads, and keeps leading', async () => {
    const { first, second } = await elected(DEFAULT_LEASE_NAME);
    await sleep(6000); // three renewals
    assert.deepEqual(
      leaders().map((c) => c.name),
      [first.name],
    );
    assert.equal(peakLeaders, 1, 'never two leaders at once');
    assert.equal(first.terms.length, 1, 'no flapping');
    assert.equal(second.terms.length, 0);
    const lease = await readLease(DEFAULT_LEASE_NAME);
    assert.equal(lease.spec.holderIdentity, first.elector.identity);
    assert.equal(lease.spec.leaseDurationSeconds, 15);
    assert.equal(lease.spec.leaseTransitions, 0);
    assert.equal(second.elector.leader, first.elector.identity, 'the other one sees who leads');
  });

  it('the leader stops (releasing the lease): the other takes over within a retry period', async () => {
    const { first, second } = await elected('release');
    const started = performance.now();
    await first.elector.stop();
    const term = first.terms[0];
    assert.ok(term);
    assert.equal(term.signal.aborted, true, 'the term signal aborted');
    assert.equal(term.stopped, true, 'onStoppedLeading ran before stop() resolved');
    await waitForLeader('the other elector takes over', first, 10_000);
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 5000, `took over after ${Math.round(elapsed)} ms`);
    assert.equal(leaders()[0], second);
    const lease = await readLease('release');
    assert.equal(lease.spec.holderIdentity, second.elector.identity);
    assert.equal(lease.spec.leaseTransitions, 1, 'a takeover counts a transition');
    assert.equal(peakLeaders, 1);
  });

  it('the leader dies without releasing: a candidate waits out the lease duration, then takes over', async () => {
    const leader = candidate('controller-a', 'expiry');
    leader.elector.start();
    await waitForLeader('the first candidate leads');
    const next = candidate('controller-c', 'expiry');
    next.elector.start();
    await eventually('the new candidate sees the leader', () =>
      Promise.resolve(next.elector.leader === leader.elector.identity ? true : undefined),
    );
    await sleep(1000);
    const died = performance.now();
    await leader.elector.stop({ release: false });
    await waitForLeader('the candidate takes over the expired lease', leader, 30_000);
    const elapsed = performance.now() - died;
    // The last renewal was at most one retry period (+ jitter) before the stop, and the candidate saw it
    // at most one retry period later; it takes over at its first round after 15 s more.
    assert.ok(elapsed > 12_000 && elapsed < 22_000, `took over after ${Math.round(elapsed)} ms`);
    assert.equal(leaders()[0], next);
    const lease = await readLease('expiry');
    assert.equal(lease.spec.holderIdentity, next.elector.identity);
    assert.equal(lease.spec.leaseTransitions, 1);
    assert.equal(peakLeaders, 1);
  });

  it('someone else writes the lease while we lead: we stop leading at once', async () => {
    const leader = candidate('controller-a', 'intruded');
    leader.elector.start();
    await waitForLeader('it leads');
    const term = leader.terms.at(-1)!;
    await kubectl([
      '-n',
      ns!.name,
      'patch',
      'lease',
      'intruded',
      '--type=merge',
      '-p',
      JSON.stringify({ spec: { holderIdentity: 'intruder' } }),
    ]);
    const changed = performance.now();
    await eventually('the leader steps down', () => Promise.resolve(term.signal.aborted ? true : undefined));
    const elapsed = performance.now() - changed;
    assert.ok(elapsed < 4000, `stepped down after ${Math.round(elapsed)} ms`);
    assert.equal(term.stopped, true);
    assert.equal(leaders().length, 0, 'nobody leads while the intruder holds the lease');
    assert.match(leader.logs.join('\n'), /stopped leading: the lease is held by intruder/);
  });

  it('the API server becomes unreachable while leading: stops leading by the renew deadline', async () => {
    relay = await apiRelay(new URL(api.server));
    const logs: string[] = [];
    let term: AbortSignal | undefined;
    const elector = new LeaderElector({
      api: api.withServer(relay.url),
      namespace: ns!.name,
      leaseName: 'outage',
      identity: electionIdentity('controller-d'),
      log: (message) => logs.push(message),
      onStartedLeading: (signal) => {
        term = signal;
      },
    });
    candidates.push({ name: 'controller-d', elector, terms: [], logs });
    elector.start();
    await eventually('it leads the new lease', () => Promise.resolve(term));
    await sleep(3000); // renewing through the relay
    relay.blackHole();
    const cut = performance.now();
    await eventually('it stops leading', () => Promise.resolve(term?.aborted ? true : undefined), 20_000);
    const elapsed = performance.now() - cut;
    // The last renewal was sent at most a retry period (+ jitter, + its own round trip) before the cut.
    assert.ok(elapsed > 6500 && elapsed < 11_500, `stopped leading ${Math.round(elapsed)} ms after the cut`);
    assert.equal(elector.isLeader, false);
    assert.match(logs.join('\n'), /stopped leading: could not renew the lease within 10 s/);
    await elector.stop({ release: false });
  });
});
