/** An expected failure of the cluster tool: printed as one line, without a stack trace. */
export class ClusterError extends Error {
  override name = 'ClusterError';
}
