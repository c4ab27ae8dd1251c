// The pod annotations Prometheus' kubernetes_sd relabelling conventionally reads, for every Sluice /metrics
// endpoint: injected sidecars (the injector adds them), gateway pods (the controller provisions them) and
// the control plane (manifests/).
export const SCRAPE_ANNOTATIONS = {
  scrape: 'prometheus.io/scrape',
  port: 'prometheus.io/port',
  path: 'prometheus.io/path',
} as const;

/** Scrape annotations for a /metrics endpoint on `port`. */
export function scrapeAnnotations(port: number): Record<string, string> {
  return {
    [SCRAPE_ANNOTATIONS.scrape]: 'true',
    [SCRAPE_ANNOTATIONS.port]: String(port),
    [SCRAPE_ANNOTATIONS.path]: '/metrics',
  };
}
