// What the injector's tests share: injection settings and the AdmissionReview fixtures in fixtures/.
import { readFileSync } from 'node:fs';
import type { InjectionSettings } from '../../../injector/pod-injection.ts';
import { DEFAULT_PROXY_RESOURCES } from '../../../protocol/proxy-resources.ts';

export type Obj = Record<string, unknown>;

export const settings: InjectionSettings = {
  image: 'registry.example.com/sluice:1.0',
  imagePullPolicy: 'IfNotPresent',
  controllerAddress: 'sluice-controller.sluice-system.svc:15012',
  trustDomain: 'cluster.local',
  proxyResources: DEFAULT_PROXY_RESOURCES,
  nativeSidecars: true,
  mtlsMode: 'PERMISSIVE',
};

/** A fresh copy of fixtures/NAME. */
export function fixture(name: string): Obj {
  return JSON.parse(readFileSync(new URL(`fixtures/${name}`, import.meta.url), 'utf8')) as Obj;
}
