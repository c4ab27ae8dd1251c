// Recommended Kubernetes labels on the objects Sluice's control plane creates (Secrets, ConfigMaps,
// webhook configurations), shared by the controller and the injector.
export const PART_OF_LABEL = 'app.kubernetes.io/part-of';
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
