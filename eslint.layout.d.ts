import type { Linter } from 'eslint';

export declare const LAYERS: Readonly<Record<string, readonly string[]>>;
export declare const layoutRules: Linter.Config[];
