import { execFile } from 'node:child_process';
import { ClusterError } from './errors.ts';

export interface RunOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly input?: string;
  readonly timeoutMs?: number;
  /** Exit codes other than 0 that are not failures. */
  readonly okCodes?: readonly number[];
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The last lines of a command's output, for one-line error messages. */
export function tail(text: string, lines = 5): string {
  return text.trim().split('\n').slice(-lines).join(' | ');
}

/** Runs a program (never through a shell) and returns its output; fails with the command and its stderr. */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      args,
      {
        env: options.env ?? process.env,
        cwd: options.cwd,
        timeout: options.timeoutMs ?? 120_000,
        maxBuffer: 256 * 1024 * 1024,
        encoding: 'utf8',
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        if (code === 0 || options.okCodes?.includes(code)) {
          resolve({ code, stdout, stderr });
          return;
        }
        const cause = error && code === -1 ? error.message : tail(stderr || stdout);
        reject(new ClusterError(`${command} ${args.slice(0, 3).join(' ')} failed (exit ${code}): ${cause}`));
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}
