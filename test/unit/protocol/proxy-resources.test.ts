import assert from 'node:assert/strict';
import {
  containerResources,
  DEFAULT_PROXY_RESOURCES,
  parseCpuQuantity,
  parseMemoryQuantity,
  PROXY_CPU_REQUEST_ANNOTATION,
  PROXY_MEMORY_REQUEST_ANNOTATION,
  proxyResourcesFor,
  proxyResourcesFromFlags,
} from '../../../protocol/proxy-resources.ts';

describe('proxy resources', () => {
  it('reads CPU quantities in millicores: 50m, 0.05, 1, .5', () => {
    assert.equal(parseCpuQuantity('50m'), 50);
    assert.equal(parseCpuQuantity(' 0.05 '), 50);
    assert.equal(parseCpuQuantity('0.007'), 7);
    assert.equal(parseCpuQuantity('1'), 1000);
    assert.equal(parseCpuQuantity('.5'), 500);
    assert.equal(parseCpuQuantity('0'), 0);
  });

  it('refuses what is not a CPU quantity, finer than a millicore, negative or absurd', () => {
    for (const bad of ['', 'fifty', '50 m', '-5m', '5.5m', '0.0005', '50Mi', '9', '1e3m']) {
      const parsed = parseCpuQuantity(bad);
      assert.ok(typeof parsed !== 'number', `${bad} refused`);
    }
    assert.match((parseCpuQuantity('9') as { error: string }).error, /at most 8000m/);
  });

  it('reads memory quantities in bytes, binary and decimal suffixes, up to the limit', () => {
    assert.equal(parseMemoryQuantity('64Mi'), 64 * 2 ** 20);
    assert.equal(parseMemoryQuantity('100M'), 100e6);
    assert.equal(parseMemoryQuantity('1024'), 1024);
    assert.equal(parseMemoryQuantity('256Mi'), 256 * 2 ** 20);
    assert.match((parseMemoryQuantity('257Mi') as { error: string }).error, /memory limit 256Mi/);
    assert.equal(parseMemoryQuantity('1Gi', Infinity), 2 ** 30); // a benchmark's own limit
    for (const bad of ['', '64mi', '64 Mi', '-1Mi', '1Pi', 'lots']) {
      assert.ok(typeof parseMemoryQuantity(bad) !== 'number', `${bad} refused`);
    }
  });

  it('takes the flags, else the environment, else the defaults; a bad value names its flag', () => {
    assert.deepEqual(proxyResourcesFromFlags({}, {}), DEFAULT_PROXY_RESOURCES);
    assert.deepEqual(
      proxyResourcesFromFlags({}, { SLUICE_PROXY_CPU_REQUEST: '10m', SLUICE_PROXY_MEMORY_REQUEST: '' }),
      { cpuRequest: '10m', memoryRequest: DEFAULT_PROXY_RESOURCES.memoryRequest },
    );
    assert.deepEqual(
      proxyResourcesFromFlags({ cpu: '5m', memory: '32Mi' }, { SLUICE_PROXY_CPU_REQUEST: '10m' }),
      { cpuRequest: '5m', memoryRequest: '32Mi' },
    );
    const bad = proxyResourcesFromFlags({ cpu: '5 cores' }, {});
    assert.ok('error' in bad && /^--proxy-cpu-request must be a CPU quantity/.test(bad.error));
    const tooMuch = proxyResourcesFromFlags({ memory: '1Gi' }, {});
    assert.ok('error' in tooMuch && /^--proxy-memory-request must not exceed/.test(tooMuch.error));
  });

  it('lets annotations override the defaults one by one, and says which annotation is bad', () => {
    const defaults = { cpuRequest: '10m', memoryRequest: '64Mi' };
    assert.deepEqual(proxyResourcesFor(defaults, {}), defaults);
    assert.deepEqual(proxyResourcesFor(defaults, { [PROXY_CPU_REQUEST_ANNOTATION]: ' 200m ' }), {
      cpuRequest: '200m',
      memoryRequest: '64Mi',
    });
    assert.deepEqual(proxyResourcesFor(defaults, { [PROXY_MEMORY_REQUEST_ANNOTATION]: '128Mi' }), {
      cpuRequest: '10m',
      memoryRequest: '128Mi',
    });
    const bad = proxyResourcesFor(defaults, { [PROXY_CPU_REQUEST_ANNOTATION]: 'lots' });
    assert.ok('error' in bad && bad.error.startsWith(`annotation ${PROXY_CPU_REQUEST_ANNOTATION}: `));
    const badMemory = proxyResourcesFor(defaults, { [PROXY_MEMORY_REQUEST_ANNOTATION]: '1Gi' });
    assert.ok('error' in badMemory && badMemory.error.includes(PROXY_MEMORY_REQUEST_ANNOTATION));
  });

  it('makes the container field: the requests and the fixed memory limit', () => {
    assert.deepEqual(containerResources({ cpuRequest: '5m', memoryRequest: '32Mi' }), {
      requests: { cpu: '5m', memory: '32Mi' },
      limits: { memory: '256Mi' },
    });
  });
});
