// The OTel-named HTTP duration histograms next to the existing sluice_* series.
import assert from 'node:assert/strict';
import { ProxyMetrics } from '../../../sidecar/metrics.ts';

describe('OTel HTTP metrics', () => {
  it('records inbound as http.server and outbound as http.client duration, with bounded method labels', () => {
    const m = new ProxyMetrics();
    const started = performance.now();
    m.request('inbound', 'none', 'app:9080', 200, started, 'GET');
    m.request('outbound', 'shop/reviews', 'shop/reviews:80', 503, started, 'PURGE');
    m.request('outbound', 'shop/reviews', 'shop/reviews:80', 200, started);
    const text = m.render();
    assert.match(
      text,
      /^http_server_request_duration_seconds_count\{http_request_method="GET",http_response_status_code="200",sluice_backend="app:9080"\} 1$/m,
    );
    assert.match(
      text,
      /^http_client_request_duration_seconds_count\{http_request_method="_OTHER",http_response_status_code="503",sluice_route="shop\/reviews",sluice_backend="shop\/reviews:80"\} 1$/m,
    );
    assert.match(text, /^# TYPE http_client_request_duration_seconds histogram$/m);
    // Without a method only the existing series count it.
    assert.match(
      text,
      /^sluice_requests_total\{direction="outbound",route="shop\/reviews",backend="shop\/reviews:80",code="200"\} 1$/m,
    );
    assert.doesNotMatch(text, /http_client_request_duration_seconds_count\{[^}]*"200"/);
  });
});
