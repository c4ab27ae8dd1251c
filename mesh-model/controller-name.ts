/** The controllerName Sluice writes into a route's status.parents (GAMMA: one per mesh implementation). */
export const MESH_CONTROLLER_NAME = 'sluice.dev/mesh';
