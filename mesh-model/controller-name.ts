/** The controllerName Sluice writes into a route's status.parents (GAMMA: one per mesh implementation). */
export const MESH_CONTROLLER_NAME = 'sluice.dev/mesh';
/** The controllerName of Sluice's GatewayClasses (north-south gateways). */
export const GATEWAY_CONTROLLER_NAME = 'sluice.dev/gateway-controller';
