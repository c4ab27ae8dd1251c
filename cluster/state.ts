import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClusterBinaries } from './components.ts';

/** What `up` recorded for `down` and `status`. */
export interface ClusterState {
  readonly nodeIp: string;
  readonly binaries?: ClusterBinaries;
  readonly startedAt?: string;
}

const file = (stateDir: string): string => join(stateDir, 'state.json');

export function readState(stateDir: string): ClusterState | undefined {
  if (!existsSync(file(stateDir))) return undefined;
  try {
    return JSON.parse(readFileSync(file(stateDir), 'utf8')) as ClusterState;
  } catch {
    return undefined;
  }
}

export function writeState(stateDir: string, state: ClusterState): void {
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(file(stateDir), `${JSON.stringify(state, null, 2)}\n`);
}
